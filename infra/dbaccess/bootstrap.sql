-- The chat server's database role, applied by the bootstrap Job as the RDS
-- master user at `pulumi up`; every statement is idempotent. psql variables:
-- app (the role), schema (its schema), db (the database).

-- A login role with no password, and none of CREATEDB, CREATEROLE or the
-- master's rds_superuser: RDS admits it by IAM token alone (rds_iam).
SELECT format('CREATE ROLE %I LOGIN', :'app')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app') \gexec
GRANT rds_iam TO :"app";
-- The master user may act as the role (PostgreSQL 16 asks for it to hand
-- the role a schema and tables); the role gains nothing from this.
GRANT :"app" TO CURRENT_USER;

GRANT CONNECT ON DATABASE :"db" TO :"app";
-- Its own schema: the server's migrations create their tables there, owned
-- by the role. It is granted nothing outside it.
CREATE SCHEMA IF NOT EXISTS :"schema" AUTHORIZATION :"app";
ALTER ROLE :"app" IN DATABASE :"db" SET search_path = :"schema";

-- Stacks from before this role: the master user migrated into public.
-- Move those tables into the role's schema, once, with their rows.
SELECT format('ALTER TABLE public.%I SET SCHEMA %I', c.relname, :'schema')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname IN ('messages', 'schema_migrations')
  AND NOT EXISTS (SELECT FROM pg_tables t WHERE t.schemaname = :'schema' AND t.tablename = c.relname) \gexec
SELECT format('ALTER TABLE %I.%I OWNER TO %I', schemaname, tablename, :'app')
FROM pg_tables WHERE schemaname = :'schema' AND tableowner <> :'app' \gexec

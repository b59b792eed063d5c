package main

import (
	"github.com/switchboard-dev/switchboard/blueprint"
	"github.com/switchboard-dev/switchboard/infra/stackconfig"
)

// kindTarget is the dev stack's: everything in the kind cluster, NGINX in
// front.
func kindTarget(cfg stackconfig.Config) blueprint.Kind {
	return blueprint.Kind{
		KubeContext: cfg.KubeContext,
		Edge:        blueprint.Nginx{Image: cfg.EdgeImage, Replicas: cfg.EdgeReplicas, NodePort: cfg.EdgeNodePort},
		RedisImage:  cfg.RedisImage, PostgresImage: cfg.PostgresImage, PostgresPassword: cfg.DatabasePassword,
	}
}

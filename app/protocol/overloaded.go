package protocol

// CodeOverloaded refuses a send because the durable queue to Postgres is
// full; nothing was kept, and the sender retries later with the same id.
const CodeOverloaded = "overloaded"

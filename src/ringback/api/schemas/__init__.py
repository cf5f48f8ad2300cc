"""What the HTTP API takes and gives, as pydantic models: one module per resource, the
shared field types and base models in `fields`. Handlers validate requests through them
(`ringback.api.common.body`, `query`); the route table names them for each operation and
`/openapi.json` is generated from them (`ringback.api.openapi`)."""

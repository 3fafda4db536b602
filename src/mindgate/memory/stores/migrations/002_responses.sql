-- Stored Responses API responses (store: true), for GET /v1/responses/{id}, input_items and
-- previous_response_id. JSON columns hold the response object, the request's input items and the chat
-- messages a continuation starts from. Times are Unix seconds; expires_at NULL keeps a row forever.
CREATE TABLE responses (
    id          TEXT PRIMARY KEY,
    owner       TEXT,
    created_at  REAL NOT NULL,
    expires_at  REAL,
    response    TEXT NOT NULL CHECK (json_valid(response)),
    input_items TEXT NOT NULL CHECK (json_valid(input_items)),
    context     TEXT NOT NULL CHECK (json_valid(context))
);
CREATE INDEX responses_expiry ON responses (expires_at) WHERE expires_at IS NOT NULL;

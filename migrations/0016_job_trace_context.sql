-- A job keeps the W3C trace context (`traceparent`) of the message or HTTP request that
-- created it, so that the dispatch round sending its tasks can link the request's trace
-- (worker.tracing). Written only when tracing is on; NULL otherwise. A nullable column
-- without a default: adding it changes the catalog only, whatever the table's size.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS trace_parent text;

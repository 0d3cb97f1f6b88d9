-- With tracing on, an event keeps the W3C traceparent of the span that published it, so that the
-- webhook deliveries the dispatcher makes from it later (in another transaction, often another
-- process) join the trace of the request or job that caused them (platform/tracing.ts). NULL when
-- tracing is off: a null costs a bit in the row's null bitmap, nothing more.
ALTER TABLE events ADD COLUMN traceparent text;

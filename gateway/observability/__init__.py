"""Traces and structured logs (docs/operations.md, "Traces" and "Logs").

| module           | holds                                                                      |
|------------------|----------------------------------------------------------------------------|
| trace_context.py | what the engine and terminals use of tracing (the OpenTelemetry API only):  |
|                  | the tracer when off, span names, a traceparent from the current span and back |
| log_context.py   | the fields of log lines about an order, set where orders are handled        |
| tracing.py       | one program's tracing from [tracing]: its own TracerProvider, sampler,       |
|                  | OTLP exporter and gRPC server interceptor                                   |
| log_format.py    | the log format: human, or a JSON object a line with the context fields       |
| metrics_endpoint.py | GET /metrics for Prometheus, served on the event loop (the metrics     |
|                  | themselves: gateway/engine/metrics.py, gateway/worker/metrics.py)            |

The domain imports none of them (tests/unit/test_layering.py).
"""

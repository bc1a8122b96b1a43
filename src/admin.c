/* STUB: admin listener (/healthz, /metrics) */

// A stand-in for an OpenTelemetry collector: an HTTP server on 127.0.0.1 that accepts OTLP/HTTP
// exports (POST /v1/traces), counts them and their bytes, and discards them. The bench's --trace
// points the server processes at it, so their tracing costs what exporting costs, without a
// collector's own work on the machine.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface OtlpSink {
  /** The base endpoint (OTEL_EXPORTER_OTLP_ENDPOINT). */
  url: string;
  exports(): { requests: number; bytes: number };
  close(): Promise<void>;
}

export async function startOtlpSink(): Promise<OtlpSink> {
  let requests = 0;
  let bytes = 0;
  const server = createServer((req, res) => {
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    req.on('end', () => {
      if (req.method === 'POST' && req.url === '/v1/traces') requests++;
      // An empty ExportTraceServiceResponse is an empty protobuf message: zero bytes.
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    exports: () => ({ requests, bytes }),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// Runs every audit of graphql-http (the GraphQL over HTTP specification's reference suite)
// against the URL given, and prints one JSON line: {"ok", "warn", "error", "notice", "failed"}.
import { serverAudits } from "graphql-http";

const url = process.argv[2];
const counts = { ok: 0, warn: 0, error: 0, notice: 0, failed: [] };
for (const audit of serverAudits({ url, fetchFn: fetch })) {
  const result = await audit.fn();
  counts[result.status] += 1;
  if (result.status !== "ok") counts.failed.push(`${result.status}: ${audit.name}`);
}
console.log(JSON.stringify(counts));

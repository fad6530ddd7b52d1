// Audits a GraphQL-over-HTTP server with graphql-http's own suite and prints every result that
// is not `ok`, then a summary. Exits 1 on any warning (a SHOULD not met) or error (a MUST);
// notices (MAY items) are printed and allowed.
import { auditServer } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs <url>');
  process.exit(2);
}
const results = await auditServer({ url });
let ok = 0, notice = 0, warn = 0, error = 0;
for (const result of results) {
  if (result.status === 'ok') ok++;
  else if (result.status === 'notice') notice++;
  else if (result.status === 'warn') warn++;
  else error++;
  if (result.status !== 'ok') {
    let detail = result.reason;
    if (result.response) {
      try {
        detail += ` | status ${result.response.status} body ${JSON.stringify(await result.response.text()).slice(0, 300)}`;
      } catch {}
    }
    console.log(`${result.status.toUpperCase()} ${result.id} ${result.name}: ${detail}`);
  }
}
console.log(`audit: ${ok} ok, ${notice} notices, ${warn} warnings, ${error} failures`);
process.exit(warn + error === 0 ? 0 : 1);

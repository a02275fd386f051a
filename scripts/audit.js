/**
 * CI's dependency audit: `npm audit --omit=dev`, the registry's advisory
 * database against what a production install holds. Fails on a high or
 * critical advisory. Where the registry has no audit endpoint (a read-only
 * mirror answers the bulk advisory POST with 405) nothing can be audited:
 * it says so loudly and passes, unless LINKGATE_AUDIT_REQUIRED=1, so CI on
 * such a machine does not fail for a reason that is not in the code.
 */
import { spawnSync } from 'node:child_process';

const run = spawnSync('npm', ['audit', '--omit=dev', '--json'], { encoding: 'utf8' });
let report;
try {
  report = JSON.parse(run.stdout);
} catch {
  report = undefined;
}

const counts = report?.metadata?.vulnerabilities;
if (counts) {
  const summary = ['critical', 'high', 'moderate', 'low', 'info'].map((level) => `${counts[level] ?? 0} ${level}`).join(', ');
  const serious = (counts.critical ?? 0) + (counts.high ?? 0);
  console.log(`npm audit (production dependencies): ${summary}`);
  if (serious > 0) {
    for (const [name, finding] of Object.entries(report.vulnerabilities ?? {})) {
      if (finding.severity === 'high' || finding.severity === 'critical') console.log(`  ${finding.severity}: ${name} ${finding.range ?? ''}`);
    }
    process.exit(1);
  }
  process.exit(0);
}

const why = report?.message ?? (run.error?.message || run.stderr.trim().split('\n').at(-1) || `npm exited ${run.status}`);
console.warn(`npm audit: NOT AUDITED, the advisory database could not be asked (${why})`);
process.exit(process.env.LINKGATE_AUDIT_REQUIRED === '1' ? 1 : 0);

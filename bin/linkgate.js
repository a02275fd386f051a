#!/usr/bin/env node
// The `linkgate` command: registers tsx (a runtime dependency) so Node can
// load the TypeScript sources, then runs src/cli/linkgate.ts.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/linkgate.ts');

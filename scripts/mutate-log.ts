// A Stryker reporter for scripts/mutate.ts: appends each mutant's result to the file named by
// MUTATE_LOG as it is known (one JSON line each), so that a run stopped midway keeps what it found.
// A plugin is a plain object here ({ kind, name, factory }), as declareFactoryPlugin would make it.
import { appendFileSync } from 'node:fs';
import { relative } from 'node:path';

interface Tested {
  id: string;
  fileName: string;
  status: string;
  mutatorName: string;
  replacement?: string;
  location: { start: { line: number; column: number } };
}

function mutantLog() {
  const file = process.env.MUTATE_LOG;
  return {
    onMutantTested(r: Tested): void {
      if (!file) return;
      const line = {
        id: r.id,
        file: relative(process.cwd(), r.fileName),
        line: r.location.start.line,
        column: r.location.start.column,
        status: r.status,
        mutator: r.mutatorName,
        replacement: r.replacement,
      };
      appendFileSync(file, JSON.stringify(line) + '\n');
    },
  };
}

export const strykerPlugins = [{ kind: 'Reporter', name: 'mutant-log', factory: mutantLog }];

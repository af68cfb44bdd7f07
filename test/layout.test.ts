/**
 * The import boundaries of DESIGN.md's layout, read from the source: every import, re-export and
 * dynamic `import()` of every file under src/ (as TypeScript's own pre-processor lists them).
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const SRC = path.resolve(import.meta.dirname, '../src');

interface SourceImport {
  /** The importing file, relative to src/ (`bots/slack/slack-adapter.ts`). */
  file: string;
  /** The specifier as written. */
  specifier: string;
  /** For a relative specifier, the imported file relative to src/ (`engine/params.ts`). */
  target?: string;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return entry.name.endsWith('.ts') ? [full] : [];
  });
}

function importsOf(full: string): SourceImport[] {
  const file = path.relative(SRC, full).split(path.sep).join('/');
  const { importedFiles } = ts.preProcessFile(readFileSync(full, 'utf8'), true, true);
  return importedFiles.map(({ fileName: specifier }) => {
    if (!specifier.startsWith('.')) return { file, specifier };
    const target = path.relative(SRC, path.resolve(path.dirname(full), specifier)).split(path.sep).join('/').replace(/\.js$/, '.ts');
    return { file, specifier, target };
  });
}

const IMPORTS = sourceFiles(SRC).flatMap(importsOf);

function crossing(from: (file: string) => boolean, to: (imported: SourceImport) => boolean): string[] {
  return IMPORTS.filter((imported) => from(imported.file) && to(imported)).map((imported) => `${imported.file} imports ${imported.specifier}`);
}

const under = (folder: string) => (file: string | undefined) => file !== undefined && file.startsWith(`${folder}/`);

describe('layout', () => {
  it('reads the imports of the source tree', () => {
    // A scan that found nothing would pass every rule below.
    expect(IMPORTS.filter((imported) => imported.file.startsWith('bots/')).length).toBeGreaterThan(50);
    expect(IMPORTS.some((imported) => imported.specifier === 'onnxruntime-node')).toBe(true);
  });

  it('the bots import nothing from the engine', () => {
    expect(crossing(under('bots'), (imported) => under('engine')(imported.target))).toEqual([]);
  });

  it('only src/engine/onnx imports onnxruntime-node', () => {
    expect(crossing((file) => !under('engine/onnx')(file), (imported) => imported.specifier === 'onnxruntime-node' || imported.specifier.startsWith('onnxruntime-node/'))).toEqual([]);
  });

  it('src/media imports no bot, job, engine or store code', () => {
    expect(crossing(under('media'), (imported) => ['bots', 'jobs', 'engine', 'store'].some((folder) => under(folder)(imported.target)))).toEqual([]);
  });

  it('the job core takes its settings as its own types: only the wiring that hands the config on imports its schema', () => {
    // The facade, the runner (output folder, timeouts), the worker settings and the worker host take the whole config.
    const wiring = ['jobs/job-service.ts', 'jobs/job-runner.ts', 'jobs/dispatch/worker-settings.ts', 'jobs/worker/host.ts'];
    expect(crossing((file) => under('jobs')(file) && !wiring.includes(file), (imported) => imported.target === 'config.ts')).toEqual([]);
  });
});

// Validates an AsyncAPI document with the official parser: `node validate.mjs <file>`.
// Prints the error diagnostics as JSON on stdout and exits 1 if there are any; warnings
// and hints go to stderr and do not fail (they are the parser's style rules).
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';

import { DiagnosticSeverity, Parser } from '@asyncapi/parser';

const file = process.argv[2];
if (!file) {
  process.stderr.write('usage: node validate.mjs <asyncapi.yaml>\n');
  process.exit(2);
}

const path = resolve(file);
const text = await readFile(path, 'utf8');
// `parse` rather than `validate`: it also builds the document model, which follows every
// $ref, so a reference that resolves to nothing fails here too.
const { document, diagnostics } = await new Parser().parse(text, { source: path });

const brief = (d) => ({ code: d.code, message: d.message, path: d.path.join('/') });
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error).map(brief);
for (const d of diagnostics.filter((d) => d.severity !== DiagnosticSeverity.Error)) {
  process.stderr.write(`${DiagnosticSeverity[d.severity].toLowerCase()}: ${JSON.stringify(brief(d))}\n`);
}
if (document === undefined && errors.length === 0) {
  errors.push({ code: 'no-document', message: 'the parser returned no document', path: '' });
}
process.stdout.write(`${JSON.stringify(errors, null, 2)}\n`);
process.exit(errors.length > 0 ? 1 : 0);

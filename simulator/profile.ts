/**
 * Loads a fault profile (YAML). Every problem is FG_PROFILE_INVALID naming the field as a dotted
 * path (`rules.1.faults.crash_loop.after_s`) and, when the file has it, its line and column.
 */
import { readFileSync } from 'node:fs';
import { isMap, isPair, isScalar, isSeq, LineCounter, type Node, parseDocument } from 'yaml';
import type { z } from 'zod';
import { err, FleetgateError, ok, type Result } from '../protocol/result.js';
import { yamlTooDeep } from '../protocol/yaml-depth.js';
import { type Profile, ProfileSchema } from './profile-schema.js';

/** A profile is a short text; anything larger is a mistake. */
export const MAX_PROFILE_BYTES = 256 * 1024;

type Segment = string | number;

/** The YAML node at `path`, or the deepest one that exists (a missing field points at its parent). */
function locate(contents: unknown, path: readonly Segment[]): Node | null {
  let node: unknown = contents;
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) break;
      node = pair.value ?? pair.key;
    } else if (isSeq(node) && typeof seg === 'number' && node.items[seg] !== undefined) {
      node = node.items[seg];
    } else break;
  }
  return (node as Node | null) ?? null;
}

/** The most useful issue: for a union, the branch that came closest (fewest issues). */
function firstIssue(issues: readonly z.core.$ZodIssue[], base: Segment[] = []): { path: Segment[]; message: string } {
  const issue = issues[0];
  if (!issue) return { path: base, message: 'invalid' };
  const path = [...base, ...(issue.path as Segment[])];
  if (issue.code === 'invalid_union' && issue.errors.length > 0) {
    const closest = issue.errors.reduce((a, b) => (b.length < a.length ? b : a));
    // A boolean-or-object union fails both ways on an object: the object branch says more.
    const objectBranch = issue.errors.find((e) => e.some((i) => i.path.length > 0 || i.code === 'unrecognized_keys'));
    return firstIssue(objectBranch ?? closest, path);
  }
  if (issue.code === 'unrecognized_keys' && issue.keys[0] !== undefined) {
    return { path: [...path, issue.keys[0]], message: `unknown field "${issue.keys[0]}"` };
  }
  return { path, message: issue.message };
}

/** Parses and validates a profile. `source` names the file in messages. */
export function parseProfile(text: string, source = 'profile'): Result<Profile> {
  if (Buffer.byteLength(text) > MAX_PROFILE_BYTES) {
    return err('FG_PROFILE_INVALID', `${source}: larger than ${MAX_PROFILE_BYTES} bytes`);
  }
  const deep = yamlTooDeep(text);
  if (deep) return err('FG_PROFILE_INVALID', `${source}: ${deep.message}`, `line ${deep.line}, column ${deep.column}`);
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true });
  const yamlError = doc.errors[0];
  if (yamlError) {
    const pos = yamlError.linePos?.[0];
    const where = pos ? `line ${pos.line}, column ${pos.col}` : undefined;
    return err('FG_PROFILE_INVALID', `${source}: YAML: ${yamlError.message.split('\n')[0]}`, where);
  }
  const raw = doc.toJS() ?? {};
  const parsed = ProfileSchema.safeParse(raw);
  if (parsed.success) return ok(parsed.data);
  const issue = firstIssue(parsed.error.issues);
  const field = issue.path.map(String).join('.') || '(root)';
  const node = locate(doc.contents, issue.path);
  const pos = node?.range ? lines.linePos(node.range[0]) : null;
  const where = pos ? ` (line ${pos.line}, column ${pos.col})` : '';
  return err('FG_PROFILE_INVALID', `${source}: ${field}: ${issue.message}${where}`, field);
}

/** Reads and parses a profile file; throws FleetgateError (FG_FILE_READ, FG_PROFILE_INVALID). */
export function loadProfile(path: string): Profile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw FleetgateError.of('FG_FILE_READ', `${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const r = parseProfile(text, path);
  if (!r.ok) throw new FleetgateError(r.error);
  return r.value;
}

/** The profile used when none is given: a healthy fleet. */
export function defaultProfile(): Profile {
  return ProfileSchema.parse({});
}

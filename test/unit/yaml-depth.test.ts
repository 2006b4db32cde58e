import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../manager/config.js';
import { parsePlan } from '../../manager/rollout/plan.js';
import { YAML_MAX_DEPTH, yamlTooDeep } from '../../protocol/yaml-depth.js';
import { parseProfile } from '../../simulator/profile.js';

/** `levels` nested block mappings, one space of indentation per level. */
const blockNested = (levels: number) =>
  `${Array.from({ length: levels }, (_, i) => `${' '.repeat(i)}k${i}:`).join('\n')} 1\n`;

describe('YAML nesting bound (protocol/yaml-depth.ts)', () => {
  it('passes real documents and nesting up to the bound, flow or block', () => {
    expect(yamlTooDeep('snapshot: abc\nstages:\n  - canary: 1 site\n  - fleet: all\n')).toBeNull();
    expect(yamlTooDeep(`${'['.repeat(YAML_MAX_DEPTH)}${']'.repeat(YAML_MAX_DEPTH)}`)).toBeNull();
    expect(yamlTooDeep(blockNested(YAML_MAX_DEPTH))).toBeNull();
    expect(yamlTooDeep('')).toBeNull();
  });

  it('names the first collection past the bound with its line and column, without recursing', () => {
    expect(yamlTooDeep('['.repeat(YAML_MAX_DEPTH + 1))).toEqual({
      line: 1,
      column: YAML_MAX_DEPTH + 1,
      message: `YAML nested deeper than ${YAML_MAX_DEPTH} levels`,
    });
    expect(yamlTooDeep(blockNested(YAML_MAX_DEPTH + 1))).toMatchObject({ line: YAML_MAX_DEPTH + 1 });
    // 200,000 levels: yaml's own composer would overflow the stack long before.
    expect(yamlTooDeep('{a: '.repeat(50_000))?.message).toMatch(/deeper than 64/);
    expect(yamlTooDeep('['.repeat(200_000))).not.toBeNull();
  });

  it('a plan, a config and a profile nested too deep are refused with their own code, not composed', () => {
    // The input the fuzzing campaign found: 3,337 `[`, which killed the process when composed from a deep stack.
    const plan = parsePlan('['.repeat(3337));
    expect(plan.ok).toBe(false);
    if (!plan.ok)
      expect([plan.error.code, plan.error.message]).toEqual([
        'FG_PLAN_INVALID',
        expect.stringContaining('nested deeper than 64'),
      ]);
    const profile = parseProfile(blockNested(100), 'p.yaml');
    expect(profile.ok || profile.error.message).toContain('p.yaml: YAML nested deeper than 64');
    const file = join(mkdtempSync(join(tmpdir(), 'fg-yaml-')), 'manager.yaml');
    writeFileSync(file, `http:\n  port: ${'['.repeat(1000)}`);
    const config = loadConfig(file);
    expect(config.ok || [config.error.code, config.error.at]).toEqual(['FG_CONFIG_INVALID', 'line 2, column 71']);
  });
});

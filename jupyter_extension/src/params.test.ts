// @vitest-environment jsdom
// The dashboard's parameter form as the deploy dialog uses it (one implementation for both).
import { describe, expect, it } from 'vitest';

import { collect, fieldsFor } from './dashboard';

describe('the parameter form from a parameter schema', () => {
  // Prefect's parameter schema (JSON schema), as GET targets and the deployments routes send it.
  const schema = {
    title: 'Parameters',
    type: 'object',
    properties: {
      n: { type: 'integer', default: 3, position: 0 },
      rate: { type: 'number', default: 0.5, position: 1 },
      region: { type: 'string', default: 'eu', position: 2 },
      tags: { type: 'array', items: { type: 'string' }, default: ['a'], position: 3 },
      needed: { type: 'integer', position: 4 }
    },
    required: ['needed'],
    definitions: {}
  };

  it('has a field per parameter with its default, and sends typed values', () => {
    const fields = fieldsFor({ parameter_schema: schema, parameters: {} });
    expect(fields.map((f) => f.name)).toEqual(['n', 'rate', 'region', 'tags', 'needed']);
    fields.find((f) => f.name === 'needed')!.input.value = '7';
    expect(collect(fields)).toEqual({ parameters: { n: 3, rate: 0.5, region: 'eu', tags: ['a'], needed: 7 } });
  });

  it('catches wrong values before anything is sent, per field', () => {
    const fields = fieldsFor({ parameter_schema: schema, parameters: {} });
    fields.find((f) => f.name === 'n')!.input.value = '2.5';
    fields.find((f) => f.name === 'tags')!.input.value = '{"not": "a list"}';
    const result = collect(fields);
    expect(result.parameters).toBeUndefined();
    expect(Object.keys(result.errors!).sort()).toEqual(['n', 'needed', 'tags']);
    expect(result.errors!.n).toMatch(/whole number/);
  });
});

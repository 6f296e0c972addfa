import '../../src/node/linearRegExp.js';

import assert from 'node:assert/strict';
import { test } from 'node:test';

import fc from 'fast-check';

import type { JsonObject } from '../../src/content/model.js';
import {
  compilePattern,
  convertToSchema,
  parseSchemaDefinition,
  schemaViolations,
  withDefaults,
  type SchemaDefinition,
} from '../../src/content/schema.js';
import { patternShape, patternSizeMax } from '../../src/content/schemaPattern.js';
import { ConclaveError } from '../../src/errors/catalogue.js';

function invalidField(raw: unknown): string {
  try {
    parseSchemaDefinition(raw);
  } catch (err) {
    assert.ok(err instanceof ConclaveError && err.code === 'INVALID_SCHEMA', String(err));
    return String(err.details['field']);
  }
  assert.fail('the definition was accepted');
}

const article = parseSchemaDefinition({
  properties: {
    title: { type: 'string', required: true, minLength: 1, maxLength: 10, fulltext: true },
    rating: { type: 'integer', minimum: 0, maximum: 5, default: 3 },
    state: { type: 'string', enum: ['draft', 'live'] },
    slug: { type: 'string', pattern: '^[a-z0-9-]+$' },
    published: { type: 'string', format: 'date-time' },
    site: { type: 'string', format: 'uri' },
    contact: { type: 'string', format: 'email' },
    tags: { type: 'array', maxLength: 3, items: { type: 'string', minLength: 2 } },
    'a/b~c': { type: 'boolean' },
  },
  additionalProperties: false,
  childTypes: ['paragraph', 'image', 'paragraph'],
});

test('a definition is stored in one form: properties by name, child types sorted and unique, defaults in place', () => {
  assert.deepEqual(Object.keys(article.properties), [...Object.keys(article.properties)].sort());
  assert.deepEqual(article.childTypes, ['image', 'paragraph']);
  assert.equal(article.additionalProperties, false);
  assert.deepEqual(parseSchemaDefinition(JSON.parse(JSON.stringify(article))), article, 'parsing the stored form gives it again');
  assert.deepEqual(parseSchemaDefinition({}), { properties: {}, additionalProperties: true });
});

test('a definition that is malformed, contradicts itself or is over a limit is refused, naming the field', () => {
  assert.equal(invalidField([]), 'schema');
  assert.equal(invalidField({ extra: 1 }), 'schema');
  assert.equal(invalidField({ properties: { a: { type: 'text' } } }), 'properties.a.type');
  assert.equal(invalidField({ properties: { a: { required: 'yes' } } }), 'properties.a.required');
  assert.equal(invalidField({ properties: { a: { minimum: 5, maximum: 1 } } }), 'properties.a');
  assert.equal(invalidField({ properties: { a: { minLength: -1 } } }), 'properties.a.minLength');
  assert.equal(invalidField({ properties: { a: { type: 'string', items: { type: 'string' } } } }), 'properties.a.items');
  assert.equal(invalidField({ properties: { a: { type: 'array', items: { required: true } } } }), 'properties.a.items');
  assert.equal(invalidField({ properties: { a: { type: 'integer', default: 1.5 } } }), 'properties.a.default');
  assert.equal(invalidField({ properties: { a: { default: null } } }), 'properties.a.default');
  assert.equal(invalidField({ properties: { a: { enum: [] } } }), 'properties.a.enum');
  assert.equal(invalidField({ properties: { a: { format: 'phone' } } }), 'properties.a.format');
  assert.equal(invalidField({ properties: { a: { renamedFrom: 'b' }, b: {} } }), 'properties.a.renamedFrom');
  assert.equal(invalidField({ properties: { a: { renamedFrom: 'c' }, b: { renamedFrom: 'c' } } }), 'properties.a.renamedFrom');
  assert.equal(invalidField({ properties: { '': {} } }), 'properties.');
  assert.equal(invalidField({ childTypes: ['ok', '9bad'] }), 'childTypes[1]');
  assert.equal(invalidField({ additionalProperties: 'no' }), 'additionalProperties');
  assert.equal(invalidField({ properties: Object.fromEntries(Array.from({ length: 257 }, (_, i) => [`p${i}`, {}])) }), 'properties');
  assert.equal(invalidField({ description: 'x'.repeat(70_000) }), 'schema');
});

test('a pattern that could backtrack is refused when the schema is written; an accepted one runs in linear time', () => {
  assert.equal(invalidField({ properties: { a: { pattern: '(a)\\1' } } }), 'properties.a.pattern');
  assert.equal(invalidField({ properties: { a: { pattern: '(?=a)b' } } }), 'properties.a.pattern');
  assert.equal(invalidField({ properties: { a: { pattern: '(' } } }), 'properties.a.pattern');
  assert.equal(invalidField({ properties: { a: { pattern: 'a{1000}' } } }), 'properties.a.pattern');
  // The classic catastrophic pattern: a backtracking engine takes exponential time on this input.
  const definition = parseSchemaDefinition({ properties: { a: { type: 'string', pattern: '^(a+)+$' } } });
  const violations = schemaViolations(definition, { a: `${'a'.repeat(100_000)}!` });
  assert.deepEqual(violations.map((v) => v.rule), ['pattern']);
  assert.equal(typeof compilePattern('^x$'), 'object');
});

test('violations name every failing property by JSON Pointer, and the rule', () => {
  const violations = schemaViolations(article, {
    rating: 9,
    state: 'gone',
    slug: 'Not A Slug',
    published: '2026-02-30T10:00:00Z',
    site: 'not a uri',
    contact: 'nobody',
    tags: ['ok', 'x', 'yy', 'zz'],
    'a/b~c': 'yes',
    extra: 1,
  });
  assert.deepEqual(
    violations.map((v) => `${v.property} ${v.rule}`),
    ['/a~1b~0c type', '/contact format', '/published format', '/rating maximum', '/site format', '/slug pattern', '/state enum', '/tags maxLength', '/tags/1 minLength', '/title required', '/extra additionalProperties'],
  );
  assert.deepEqual(schemaViolations(article, { title: 'Hello', rating: 5, published: '2026-02-28T10:00:00.5+01:00', site: 'https://example.com/x', contact: 'a.b@example.com', tags: ['ab'] }), []);
  assert.deepEqual(schemaViolations(article, { title: 'x'.repeat(11) }).map((v) => v.rule), ['maxLength']);
  assert.deepEqual(schemaViolations(article, { title: '😀'.repeat(10) }), [], 'lengths count characters, not UTF-16 units');
  assert.deepEqual(schemaViolations(article, { title: 'ok', rating: null }).map((v) => `${v.property} ${v.rule}`), ['/rating type'], 'null is no integer');
  assert.deepEqual(schemaViolations(article, { title: null }).map((v) => v.rule), ['required'], 'null counts as absent');
});

test('defaults fill absent properties; conversion renames, then fills, and changes nothing the second time', () => {
  assert.deepEqual(withDefaults(article, { title: 'a' }), { title: 'a', rating: 3 });
  const unchanged: JsonObject = { title: 'a', rating: 1 };
  assert.equal(withDefaults(article, unchanged), unchanged, 'nothing to fill: the same object');
  const renamed = parseSchemaDefinition({ properties: { headline: { type: 'string', required: true, renamedFrom: 'title' }, views: { type: 'integer', default: 0 } } });
  const once = convertToSchema(renamed, { title: 'Hello', body: 'x' });
  assert.deepEqual(once, { headline: 'Hello', body: 'x', views: 0 });
  assert.deepEqual(convertToSchema(renamed, once), once);
  assert.deepEqual(convertToSchema(renamed, { title: 'old', headline: 'kept' }), { headline: 'kept', views: 0 }, 'a value under the new name wins');
});

const jsonValue = fc.jsonValue({ maxDepth: 4 }) as fc.Arbitrary<unknown>;
const ruleArbitrary = fc.record(
  {
    type: fc.constantFrom('string', 'number', 'integer', 'boolean', 'object', 'array', 'text'),
    required: fc.oneof(fc.boolean(), jsonValue),
    default: jsonValue,
    enum: fc.oneof(fc.array(jsonValue, { maxLength: 4 }), jsonValue),
    minimum: fc.oneof(fc.integer(), jsonValue),
    maximum: fc.oneof(fc.integer(), jsonValue),
    minLength: fc.oneof(fc.nat(20), jsonValue),
    maxLength: fc.oneof(fc.nat(20), jsonValue),
    pattern: fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('^[a-z]+$', '(a+)+', '\\d{2,4}', '(?<=x)y', '[')),
    format: fc.constantFrom('date-time', 'uri', 'email', 'phone'),
    items: fc.record({ type: fc.constantFrom('string', 'integer') }, { requiredKeys: [] }),
    renamedFrom: fc.string({ maxLength: 6 }),
    unknownField: jsonValue,
  },
  { requiredKeys: [] },
);
const definitionArbitrary = fc.oneof(
  jsonValue,
  fc.record(
    {
      properties: fc.oneof(fc.dictionary(fc.string({ maxLength: 6 }), ruleArbitrary, { maxKeys: 5 }), jsonValue),
      additionalProperties: fc.oneof(fc.boolean(), jsonValue),
      childTypes: fc.oneof(fc.array(fc.constantFrom('a', 'b.c', '9', ''), { maxLength: 3 }), jsonValue),
      description: fc.oneof(fc.string(), jsonValue),
    },
    { requiredKeys: [] },
  ),
);

test('property: any JSON is accepted as a definition in its stored form or refused with INVALID_SCHEMA; checks of any properties never fail otherwise', () => {
  fc.assert(
    fc.property(definitionArbitrary, fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 6 }), (raw, properties) => {
      let definition: SchemaDefinition;
      try {
        definition = parseSchemaDefinition(raw);
      } catch (err) {
        assert.ok(err instanceof ConclaveError && err.code === 'INVALID_SCHEMA', String(err));
        return;
      }
      // What is stored is read back as the same definition: nothing accepted fails to decode later.
      assert.deepEqual(parseSchemaDefinition(JSON.parse(JSON.stringify(definition))), definition);
      const props = properties as JsonObject;
      const violations = schemaViolations(definition, props);
      for (const v of violations) assert.ok(typeof v.property === 'string' && typeof v.rule === 'string' && v.message.length > 0);
      // Defaults follow their own rules: a property a default filled breaks none of them.
      const filledViolations = schemaViolations(definition, withDefaults(definition, props));
      for (const [name, rule] of Object.entries(definition.properties)) {
        if (rule.default === undefined || (props[name] !== undefined && props[name] !== null)) continue;
        const pointer = `/${name.replace(/~/g, '~0').replace(/\//g, '~1')}`;
        assert.ok(!filledViolations.some((v) => v.property === pointer), `the default of ${name} breaks its rule`);
      }
      const converted = convertToSchema(definition, props);
      assert.deepEqual(convertToSchema(definition, converted), converted, 'conversion is idempotent');
    }),
    { numRuns: 2000 },
  );
});

test('patterns: a fixed grammar every node reads alike, each measured by the size the engine expands it to', () => {
  const size = (p: string) => {
    const shape = patternShape(p);
    assert.ok('size' in shape, `${p}: ${'problem' in shape ? shape.problem : ''}`);
    return shape.size;
  };
  assert.equal(size('^[a-z0-9-]+$'), 4);
  assert.equal(size('^\\d{4}-\\d{2}$'), 9);
  assert.equal(size('(?:ab|c){3}'), 9);
  assert.equal(size('x{2,16}?'), 16);
  assert.equal(size('\\bfoo\\b|\\x41\\u00e9[\\]^-]'), 8);
  for (const refused of ['(a)\\1', '(?=a)', '(?<n>a)', '(?i:a)', '$+', '^{2}', '\\b*', 'a{17}', 'a{2,1}', '[', '[]', '(a', 'a)', '*a', 'a**', 'a{', '\\p{L}', '\\k<n>', '\\', '\\q', '[[a]]', '[!- ]', '[z-a]', '[\\d-z]', '[a-\\w]']) {
    assert.ok('problem' in patternShape(refused), `${refused} was taken`);
  }
  assert.ok('problem' in patternShape('(?:(?:(?:a|b|c|d){16}){16})'), 'expands past the bound');
  assert.equal(invalidField({ properties: { a: { pattern: '(?:[a-j]{1,16}){1,16}z' } } }), 'properties.a.pattern');
});

test('property: the grammar never throws, and every pattern it takes compiles with the linear-time engine within its size bound', () => {
  const piece = fc.constantFrom('a', 'b', '.', '-', ' ', '!', 'z', '\\d', '\\w', '[a-z]', '[^0-9]', '(', ')', '(?:', '|', '*', '+', '?', '{2}', '{1,3}', '{2,}', '^', '$', '\\', '[', ']', '{', '}', '(?=', '\\1', '\\x4', '\\u00e9');
  fc.assert(
    fc.property(fc.oneof(fc.string({ maxLength: 30 }), fc.array(piece, { maxLength: 14 }).map((p) => p.join(''))), (source) => {
      const shape = patternShape(source);
      if ('problem' in shape) return;
      assert.ok(shape.size >= 1 && shape.size <= patternSizeMax);
      assert.equal(typeof compilePattern(source), 'object', `${source} passed the grammar but not the engine`);
    }),
    { numRuns: 5000 },
  );
});

test('the patterns of one node are bounded in work: past it the rule fails, the same way on every node', () => {
  const definition = parseSchemaDefinition({ properties: { tags: { type: 'array', items: { type: 'string', pattern: '^(?:[a-z]|[0-9]){1,16}$' } } } });
  assert.deepEqual(schemaViolations(definition, { tags: Array.from({ length: 1000 }, () => 'abc') }), []);
  const heavy = schemaViolations(definition, { tags: Array.from({ length: 200 }, () => 'a'.repeat(1000)) });
  assert.ok(heavy.some((v) => v.rule === 'pattern' && v.message.startsWith('cannot be matched')), JSON.stringify(heavy.slice(0, 2)));
  // A string its length rule refuses is not matched at all.
  const bounded = parseSchemaDefinition({ properties: { code: { type: 'string', maxLength: 8, pattern: '^[A-Z]+$' } } });
  assert.deepEqual(schemaViolations(bounded, { code: 'x'.repeat(100_000) }).map((v) => v.rule), ['maxLength']);
});

test('items, defaults and enum values are bounded; date-times of every year are taken', () => {
  let items: Record<string, unknown> = { type: 'string' };
  for (let i = 0; i < 9; i++) items = { type: 'array', items };
  assert.equal(invalidField({ properties: { a: { type: 'array', items } } }), 'properties.a.items.items.items.items.items.items.items.items.items');
  let deep: unknown = 1;
  for (let i = 0; i < 20; i++) deep = [deep];
  assert.equal(invalidField({ properties: { a: { default: deep } } }), 'properties.a.default');
  assert.equal(invalidField({ properties: { a: { enum: ['ok', deep] } } }), 'properties.a.enum[1]');
  assert.equal(invalidField({ properties: { a: { enum: ['x'.repeat(20_000)] } } }), 'properties.a.enum[0]');
  const when = parseSchemaDefinition({ properties: { at: { type: 'string', format: 'date-time' } } });
  assert.deepEqual(schemaViolations(when, { at: '0050-03-01T00:00:00Z' }), []);
  assert.equal(schemaViolations(when, { at: '0050-02-29T00:00:00Z' }).length, 1, 'year 50 was no leap year');
});

import { ConclaveError, invariant } from '../errors/catalogue.js';
import { isPlainObject } from './mergePatch.js';
import { rootNodeType, type JsonObject, type JsonValue } from './model.js';
import { utf8Bytes } from './paths.js';
import { patternShape } from './schemaPattern.js';
import { nestingDepth, parseNodeType } from './validate.js';

/**
 * Schemas: what a node of a content type must hold. A schema is cluster state, written through the journal (the
 * putSchema command) and checked by apply() against the version in force at each entry, so every node accepts and
 * refuses exactly the same writes. Everything here is pure and deterministic: the same definition and properties
 * give the same violations on every node.
 *
 * A definition, as the API takes it:
 *   { "properties": { "<name>": <rule>, … }, "additionalProperties": true | false, "childTypes": ["<type>", …] }
 * a rule:
 *   { "type": "string" | "number" | "integer" | "boolean" | "object" | "array", "required", "default", "enum",
 *     "minimum", "maximum", "minLength", "maxLength", "pattern", "format": "date-time" | "uri" | "email",
 *     "items": <rule>, "fulltext", "renamedFrom": "<old name>", "description" }
 */

export const schemaPropertyTypes = ['string', 'number', 'integer', 'boolean', 'object', 'array'] as const;
export type SchemaPropertyType = (typeof schemaPropertyTypes)[number];
export const schemaFormats = ['date-time', 'uri', 'email'] as const;
export type SchemaFormat = (typeof schemaFormats)[number];

export interface PropertyRule {
  readonly type?: SchemaPropertyType;
  readonly required?: boolean;
  readonly default?: JsonValue;
  readonly enum?: readonly JsonValue[];
  readonly minimum?: number;
  readonly maximum?: number;
  /** Characters (code points) of a string, or items of an array. */
  readonly minLength?: number;
  readonly maxLength?: number;
  /** An ECMAScript regular expression a string must match somewhere (anchor it with ^…$), run in linear time. */
  readonly pattern?: string;
  readonly format?: SchemaFormat;
  /** The rule every item of an array follows. */
  readonly items?: PropertyRule;
  /** Whether full-text search indexes the property (strings, and arrays of strings). */
  readonly fulltext?: boolean;
  /** A migration to this schema moves the value of this property (of the previous version) here. */
  readonly renamedFrom?: string;
  readonly description?: string;
}

export interface SchemaDefinition {
  readonly properties: Readonly<Record<string, PropertyRule>>;
  /** False: a property the schema does not declare is a violation. */
  readonly additionalProperties: boolean;
  /** The types a child of such a node may have; absent: any. */
  readonly childTypes?: readonly string[];
  readonly description?: string;
}

/** One failed rule: the property by JSON Pointer ("/tags/2"; "" for the node itself), the rule, what is wrong. */
export interface SchemaViolation {
  readonly property: string;
  readonly rule: string;
  readonly message: string;
}

// Limits of a definition: constants, like every limit apply() depends on (src/content/limits.ts).
export const schemaBytesMax = 64 * 1024;
export const schemaPropertiesMax = 256;
export const schemaPropertyNameBytesMax = 128;
export const schemaEnumValuesMax = 256;
export const schemaPatternCharsMax = 1024;
export const schemaChildTypesMax = 256;
export const schemaDescriptionCharsMax = 1024;
/** Violations one refusal names at most (the count says how many there were). */
export const schemaViolationsReportedMax = 100;
/** How deeply `items` rules nest. */
export const schemaItemsDepthMax = 8;
/** A default or an enum value: at most this deep and this large as JSON (they are compared with every value written). */
export const schemaValueDepthMax = 16;
export const schemaValueBytesMax = 16 * 1024;
/**
 * The pattern work one node's properties may take, in characters matched times the pattern's expanded size
 * (schemaPattern.ts): V8's linear engine costs some 20 ns a unit, so this bounds the patterns of one write to
 * tens of milliseconds on every node. Past it, the pattern rule fails (deterministically: it depends on the
 * values and the schema alone).
 */
export const schemaPatternWorkMax = 2_000_000;

const ruleFields = ['type', 'required', 'default', 'enum', 'minimum', 'maximum', 'minLength', 'maxLength', 'pattern', 'format', 'items', 'fulltext', 'renamedFrom', 'description'];
/** What an items rule may hold: it describes values, not properties. */
const itemRuleFields = ['type', 'enum', 'minimum', 'maximum', 'minLength', 'maxLength', 'pattern', 'format', 'items', 'description'];
const definitionFields = ['properties', 'additionalProperties', 'childTypes', 'description'];

function invalid(message: string, field: string): ConclaveError {
  return new ConclaveError('INVALID_SCHEMA', `${message} (at ${field}).`, { field });
}

function onlyFields(raw: Record<string, unknown>, allowed: readonly string[], field: string): void {
  const unknown = Object.keys(raw).filter((k) => !allowed.includes(k));
  if (unknown.length > 0) throw invalid(`Unknown field(s) ${unknown.join(', ')}; a rule takes ${allowed.join(', ')}`, field);
}

function nonNegativeInteger(raw: unknown, field: string): number {
  if (typeof raw !== 'number' || !Number.isSafeInteger(raw) || raw < 0) throw invalid('Must be a non-negative integer', field);
  return raw;
}

function finiteNumber(raw: unknown, field: string): number {
  if (typeof raw !== 'number' || !Number.isFinite(raw)) throw invalid('Must be a number', field);
  return raw;
}

function optionalString(raw: unknown, field: string, charsMax: number): string | undefined {
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string' || raw.length > charsMax) throw invalid(`Must be a string of at most ${charsMax} characters`, field);
  return raw;
}

/**
 * Compiles a pattern with V8's linear-time engine (the `l` flag): a pattern that could backtrack (backreferences,
 * lookaround, huge counted repetitions) is refused when the schema is written, so no value a client sends can make
 * a check run for long — on the node that receives it or in apply() on every node. The engine must be switched on
 * in the process (src/node/linearRegExp.ts does it first thing); a process without it fails loudly here.
 */
export function compilePattern(source: string): RegExp | string {
  try {
    // eslint-disable-next-line no-invalid-regexp -- the `l` flag exists once linearRegExp.ts switched the engine on
    return new RegExp(source, 'l');
  } catch (err) {
    invariant(!/invalid (regular expression )?flags/i.test((err as Error).message), 'the linear-time RegExp engine is off: import src/node/linearRegExp.js before any schema is read');
    return (err as Error).message.replace(/^Invalid regular expression: /, '');
  }
}

const compiledPatterns = new Map<string, { readonly regexp: RegExp; readonly size: number }>();
const compiledPatternsMax = 1024;

/** A stored pattern, compiled, with its expanded size; both were checked when the schema was written. */
function patternOf(source: string): { readonly regexp: RegExp; readonly size: number } {
  let compiled = compiledPatterns.get(source);
  if (compiled === undefined) {
    const shape = patternShape(source);
    invariant('size' in shape, `a stored schema holds the pattern ${source}, which the pattern grammar refuses`);
    const regexp = compilePattern(source);
    invariant(typeof regexp !== 'string', `a stored schema holds the pattern ${source}, which does not compile: ${String(regexp)}`);
    if (compiledPatterns.size >= compiledPatternsMax) compiledPatterns.clear();
    compiled = { regexp, size: shape.size };
    compiledPatterns.set(source, compiled);
  }
  return compiled;
}

/** A default or enum value within its bounds, or INVALID_SCHEMA. */
function boundedValue(value: unknown, field: string): JsonValue {
  if (nestingDepth(value, schemaValueDepthMax) > schemaValueDepthMax || utf8Bytes(JSON.stringify(value)) > schemaValueBytesMax) {
    throw invalid(`Must nest at most ${schemaValueDepthMax} deep and take at most ${schemaValueBytesMax} bytes`, field);
  }
  return value as JsonValue;
}

function parseRule(raw: unknown, field: string, itemsDepth: number): PropertyRule {
  const item = itemsDepth > 0;
  if (!isPlainObject(raw)) throw invalid('A rule must be a JSON object', field);
  onlyFields(raw, item ? itemRuleFields : ruleFields, field);
  const rule: { -readonly [K in keyof PropertyRule]: PropertyRule[K] } = {};
  if (raw['type'] !== undefined) {
    if (!(schemaPropertyTypes as readonly unknown[]).includes(raw['type'])) throw invalid(`"type" must be one of ${schemaPropertyTypes.join(', ')}`, `${field}.type`);
    rule.type = raw['type'] as SchemaPropertyType;
  }
  for (const flag of ['required', 'fulltext'] as const) {
    if (raw[flag] === undefined) continue;
    if (typeof raw[flag] !== 'boolean') throw invalid(`"${flag}" must be true or false`, `${field}.${flag}`);
    rule[flag] = raw[flag];
  }
  if (raw['enum'] !== undefined) {
    const values = raw['enum'];
    if (!Array.isArray(values) || values.length === 0 || values.length > schemaEnumValuesMax) throw invalid(`"enum" must be an array of 1 to ${schemaEnumValuesMax} values`, `${field}.enum`);
    rule.enum = values.map((v, i) => boundedValue(v, `${field}.enum[${i}]`));
  }
  for (const bound of ['minimum', 'maximum'] as const) if (raw[bound] !== undefined) rule[bound] = finiteNumber(raw[bound], `${field}.${bound}`);
  for (const bound of ['minLength', 'maxLength'] as const) if (raw[bound] !== undefined) rule[bound] = nonNegativeInteger(raw[bound], `${field}.${bound}`);
  if (rule.minimum !== undefined && rule.maximum !== undefined && rule.minimum > rule.maximum) throw invalid('"minimum" is above "maximum"', field);
  if (rule.minLength !== undefined && rule.maxLength !== undefined && rule.minLength > rule.maxLength) throw invalid('"minLength" is above "maxLength"', field);
  if (raw['pattern'] !== undefined) {
    const pattern = optionalString(raw['pattern'], `${field}.pattern`, schemaPatternCharsMax)!;
    const shape = patternShape(pattern);
    if ('problem' in shape) throw invalid(`"pattern" is not one patterns take: ${shape.problem}`, `${field}.pattern`);
    const compiled = compilePattern(pattern);
    if (typeof compiled === 'string') throw invalid(`"pattern" is not a regular expression that runs in linear time (no backreferences, lookaround or large counted repetitions): ${compiled}`, `${field}.pattern`);
    rule.pattern = pattern;
  }
  if (raw['format'] !== undefined) {
    if (!(schemaFormats as readonly unknown[]).includes(raw['format'])) throw invalid(`"format" must be one of ${schemaFormats.join(', ')}`, `${field}.format`);
    rule.format = raw['format'] as SchemaFormat;
  }
  if (raw['items'] !== undefined) {
    if (rule.type !== 'array') throw invalid('"items" needs "type": "array"', `${field}.items`);
    if (itemsDepth >= schemaItemsDepthMax) throw invalid(`"items" nest at most ${schemaItemsDepthMax} deep`, `${field}.items`);
    rule.items = parseRule(raw['items'], `${field}.items`, itemsDepth + 1);
  }
  rule.description = optionalString(raw['description'], `${field}.description`, schemaDescriptionCharsMax);
  if (rule.description === undefined) delete rule.description;
  if (raw['renamedFrom'] !== undefined) rule.renamedFrom = propertyName(raw['renamedFrom'], `${field}.renamedFrom`);
  if (raw['default'] !== undefined) {
    if (raw['default'] === null) throw invalid('"default" cannot be null (null counts as absent)', `${field}.default`);
    const problems = valueViolations(rule, boundedValue(raw['default'], `${field}.default`), '', { left: schemaPatternWorkMax });
    if (problems.length > 0) throw invalid(`"default" does not follow its own rule: ${problems[0]!.message}`, `${field}.default`);
    rule.default = raw['default'] as JsonValue;
  }
  return rule;
}

function propertyName(raw: unknown, field: string): string {
  if (typeof raw !== 'string' || raw === '' || utf8Bytes(raw) > schemaPropertyNameBytesMax) throw invalid(`A property name is a string of 1 to ${schemaPropertyNameBytesMax} bytes`, field);
  return raw;
}

/**
 * Checks a definition as a client sent it and returns it in its stored form (fields in a fixed order, so that every
 * node stores the same text). Throws INVALID_SCHEMA naming the field.
 */
export function parseSchemaDefinition(raw: unknown): SchemaDefinition {
  if (!isPlainObject(raw)) throw invalid('A schema must be a JSON object', 'schema');
  const bytes = utf8Bytes(JSON.stringify(raw));
  if (bytes > schemaBytesMax) throw invalid(`The schema takes ${bytes} bytes; the limit is ${schemaBytesMax}`, 'schema');
  onlyFields(raw, definitionFields, 'schema');
  const rawProperties = raw['properties'] ?? {};
  if (!isPlainObject(rawProperties)) throw invalid('"properties" must be an object of rules by property name', 'properties');
  const names = Object.keys(rawProperties);
  if (names.length > schemaPropertiesMax) throw invalid(`A schema declares at most ${schemaPropertiesMax} properties`, 'properties');
  const properties: Record<string, PropertyRule> = {};
  for (const name of names.sort()) {
    propertyName(name, `properties.${name}`);
    properties[name] = parseRule(rawProperties[name], `properties.${name}`, 0);
  }
  for (const [name, rule] of Object.entries(properties)) {
    if (rule.renamedFrom === undefined) continue;
    if (Object.hasOwn(properties, rule.renamedFrom)) throw invalid(`"renamedFrom" names ${rule.renamedFrom}, which this schema still declares`, `properties.${name}.renamedFrom`);
    if (Object.values(properties).some((other) => other !== rule && other.renamedFrom === rule.renamedFrom)) {
      throw invalid(`Two properties are renamed from ${rule.renamedFrom}`, `properties.${name}.renamedFrom`);
    }
  }
  const additional = raw['additionalProperties'] ?? true;
  if (typeof additional !== 'boolean') throw invalid('"additionalProperties" must be true or false', 'additionalProperties');
  const definition: { -readonly [K in keyof SchemaDefinition]: SchemaDefinition[K] } = { properties, additionalProperties: additional };
  if (raw['childTypes'] !== undefined) {
    const types = raw['childTypes'];
    if (!Array.isArray(types) || types.length > schemaChildTypesMax) throw invalid(`"childTypes" must be an array of at most ${schemaChildTypesMax} types`, 'childTypes');
    definition.childTypes = [...new Set(types.map((t, i) => {
      try {
        return parseNodeType(t);
      } catch {
        throw invalid('A child type is a type name: letters, digits, "_", ".", ":" or "-", starting with a letter', `childTypes[${i}]`);
      }
    }))].sort();
  }
  const description = optionalString(raw['description'], 'description', schemaDescriptionCharsMax);
  if (description !== undefined) definition.description = description;
  return definition;
}

/** The type a schema is for: a node type, but not the root's (the root holds whatever it holds). */
export function parseSchemaTypeName(raw: unknown): string {
  const name = parseNodeType(raw);
  if (name === rootNodeType) throw new ConclaveError('INVALID_REQUEST', 'The root\'s type "root" takes no schema.', { field: 'type' });
  return name;
}

/** JSON Pointer escaping of one reference token (RFC 6901). */
function pointerToken(name: string): string {
  return name.replace(/~/g, '~0').replace(/\//g, '~1');
}

function typeOf(value: JsonValue): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

function hasType(value: JsonValue, type: SchemaPropertyType): boolean {
  switch (type) {
    case 'string':
      return typeof value === 'string';
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    case 'integer':
      return typeof value === 'number' && Number.isSafeInteger(value);
    case 'boolean':
      return typeof value === 'boolean';
    case 'object':
      return isPlainObject(value);
    case 'array':
      return Array.isArray(value);
  }
}

/** The same JSON value: objects compare by their members whatever their order. */
export function sameJson(a: JsonValue, b: JsonValue): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((v, i) => sameJson(v, b[i]!));
  }
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => Object.hasOwn(b, k) && sameJson(a[k]!, b[k]!));
}

// date-time: RFC 3339's internet date-time, and a date that exists (Date.parse checks the calendar loosely: 02-30
// parses, so the fields are checked against the date it gives).
const dateTimePattern = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;
const emailPattern = /^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$/;
const uriPattern = /^[A-Za-z][A-Za-z0-9+.-]*:[^\s]*$/;

function followsFormat(value: string, format: SchemaFormat): boolean {
  switch (format) {
    case 'date-time': {
      const m = dateTimePattern.exec(value);
      if (m === null) return false;
      const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
      const date = new Date(0);
      date.setUTCFullYear(year, month - 1, day);
      return date.getUTCFullYear() === year && date.getUTCMonth() === month - 1 && date.getUTCDate() === day && hour < 24 && minute < 60 && second < 61;
    }
    case 'email':
      return value.length <= 254 && emailPattern.test(value);
    case 'uri':
      return value.length <= 8192 && uriPattern.test(value);
  }
}

/** Code points of a string (what JSON Schema's lengths count), without making an array of them. */
function codePoints(value: string): number {
  let count = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < value.length) i++;
    count++;
  }
  return count;
}

/** The pattern work left for the values of one node (schemaPatternWorkMax). */
interface PatternBudget {
  left: number;
}

/** The rules `value` breaks, each named by `pointer` (the value's place). */
function valueViolations(rule: PropertyRule, value: JsonValue, pointer: string, budget: PatternBudget): SchemaViolation[] {
  const out: SchemaViolation[] = [];
  const add = (rule: string, message: string, at = pointer) => out.push({ property: at, rule, message });
  if (rule.type !== undefined && !hasType(value, rule.type)) {
    add('type', `must be ${rule.type === 'integer' || rule.type === 'array' || rule.type === 'object' ? 'an' : 'a'} ${rule.type}, not ${typeOf(value)}`);
    return out;
  }
  if (rule.enum !== undefined && !rule.enum.some((allowed) => sameJson(allowed, value))) add('enum', `must be one of ${JSON.stringify(rule.enum).slice(0, 200)}`);
  if (typeof value === 'number') {
    if (rule.minimum !== undefined && value < rule.minimum) add('minimum', `must be at least ${rule.minimum}`);
    if (rule.maximum !== undefined && value > rule.maximum) add('maximum', `must be at most ${rule.maximum}`);
  }
  const length = typeof value === 'string' ? codePoints(value) : Array.isArray(value) ? value.length : undefined;
  if (length !== undefined) {
    const unit = typeof value === 'string' ? 'characters' : 'items';
    if (rule.minLength !== undefined && length < rule.minLength) add('minLength', `must have at least ${rule.minLength} ${unit}`);
    if (rule.maxLength !== undefined && length > rule.maxLength) add('maxLength', `must have at most ${rule.maxLength} ${unit}`);
  }
  if (typeof value === 'string') {
    // A string its lengths refuse is not matched as well: it may be long, and it is refused anyway.
    if (rule.pattern !== undefined && out.length === 0) {
      const pattern = patternOf(rule.pattern);
      const work = value.length * pattern.size;
      if (work > budget.left) {
        budget.left = 0;
        add('pattern', `cannot be matched: the node's values hold more text than its schema's patterns check (at most ${schemaPatternWorkMax} characters times the pattern's size)`);
      } else {
        budget.left -= work;
        if (!pattern.regexp.test(value)) add('pattern', `must match ${rule.pattern}`);
      }
    }
    if (rule.format !== undefined && !followsFormat(value, rule.format)) add('format', `must be ${rule.format === 'uri' ? 'a URI' : rule.format === 'email' ? 'an e-mail address' : 'an RFC 3339 date-time'}`);
  }
  if (rule.items !== undefined && Array.isArray(value)) {
    value.forEach((item, i) => {
      if (out.length < schemaViolationsReportedMax) out.push(...valueViolations(rule.items!, item, `${pointer}/${i}`, budget));
    });
  }
  return out;
}

/** Every rule of `definition` that `properties` break (at most schemaViolationsReportedMax, in property order). */
export function schemaViolations(definition: SchemaDefinition, properties: JsonObject): SchemaViolation[] {
  const out: SchemaViolation[] = [];
  const budget: PatternBudget = { left: schemaPatternWorkMax };
  for (const [name, rule] of Object.entries(definition.properties)) {
    const value = Object.hasOwn(properties, name) ? properties[name] : undefined;
    const pointer = `/${pointerToken(name)}`;
    if (value === undefined || value === null) {
      if (rule.required === true) out.push({ property: pointer, rule: 'required', message: 'is required' });
      else if (value === null && rule.type !== undefined) out.push({ property: pointer, rule: 'type', message: `must be ${rule.type === 'integer' || rule.type === 'array' || rule.type === 'object' ? 'an' : 'a'} ${rule.type}, not null` });
      continue;
    }
    out.push(...valueViolations(rule, value, pointer, budget));
    if (out.length >= schemaViolationsReportedMax) break;
  }
  if (!definition.additionalProperties) {
    for (const name of Object.keys(properties)) {
      if (!Object.hasOwn(definition.properties, name)) out.push({ property: `/${pointerToken(name)}`, rule: 'additionalProperties', message: 'is not declared by the schema' });
    }
  }
  return out.slice(0, schemaViolationsReportedMax);
}

/** The properties with every declared default filled in where the property is absent (the input is not changed). */
export function withDefaults(definition: SchemaDefinition, properties: JsonObject): JsonObject {
  let out: JsonObject | undefined;
  for (const [name, rule] of Object.entries(definition.properties)) {
    if (rule.default === undefined || (Object.hasOwn(properties, name) && properties[name] !== null)) continue;
    out ??= { ...properties };
    out[name] = rule.default;
  }
  return out ?? properties;
}

/**
 * The properties of a node written under an earlier version, converted to `definition`: each property a rule renames
 * moves to its new name (unless the new name holds a value already), then the defaults fill what is absent. Applied
 * twice, it changes nothing more: a node converted already stays as it is.
 */
export function convertToSchema(definition: SchemaDefinition, properties: JsonObject): JsonObject {
  let out: JsonObject | undefined;
  for (const [name, rule] of Object.entries(definition.properties)) {
    const from = rule.renamedFrom;
    if (from === undefined || !Object.hasOwn(properties, from)) continue;
    out ??= { ...properties };
    if (!Object.hasOwn(out, name) || out[name] === null) out[name] = properties[from]!;
    delete out[from];
  }
  return withDefaults(definition, out ?? properties);
}

/** The error a write gets when the node it would leave breaks its type's schema. */
export function schemaViolationError(path: string, type: string, version: number, violations: readonly SchemaViolation[]): ConclaveError {
  const first = violations[0];
  invariant(first !== undefined, 'a schema violation names at least one rule');
  const more = violations.length > 1 ? ` and ${violations.length - 1} more` : '';
  return new ConclaveError('SCHEMA_VIOLATION', `${path} breaks the schema of type ${type} (version ${version}): ${first.property || 'the node'} ${first.message}${more}.`, {
    path,
    type,
    schemaVersion: version,
    violations: violations.map((v) => ({ ...v })),
  });
}

/** The properties of a typed node as they must be stored, or SCHEMA_VIOLATION. */
export function conformingProperties(schema: { readonly definition: SchemaDefinition; readonly version: number }, path: string, type: string, properties: JsonObject): JsonObject {
  const filled = withDefaults(schema.definition, properties);
  const violations = schemaViolations(schema.definition, filled);
  if (violations.length > 0) throw schemaViolationError(path, type, schema.version, violations);
  return filled;
}

/** Refuses a child of type `childType` under a node whose schema limits its children's types. */
export function checkChildType(parent: { readonly path: string; readonly type: string }, parentSchema: { readonly definition: SchemaDefinition; readonly version: number } | undefined, childPath: string, childType: string): void {
  const allowed = parentSchema?.definition.childTypes;
  if (allowed === undefined || allowed.includes(childType)) return;
  throw new ConclaveError('SCHEMA_VIOLATION', `${parent.path} (type ${parent.type}) may hold children of type ${allowed.join(', ') || '(none)'}, not ${childType} (${childPath}).`, {
    path: childPath,
    type: parent.type,
    schemaVersion: parentSchema!.version,
    violations: [{ property: '', rule: 'childTypes', message: `a child of type ${childType} is not allowed` }],
  });
}

// The library ships this module's types as utils/utf8.d.ts beside utf8.mjs, which TypeScript does not pair with a
// deep import of the .mjs file; this declares the one function plainDecoder.ts takes from it.
declare module '@msgpack/msgpack/dist.esm/utils/utf8.mjs' {
  export function utf8Decode(bytes: Uint8Array, inputOffset: number, byteLength: number): string;
}

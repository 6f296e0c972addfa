/**
 * Limits of the data format. They are constants, not settings: every node of a cluster applies the same journal
 * and must accept or refuse exactly the same commands, so a per-node setting here could make replicas diverge.
 * Per-node limits on requests (body size, binary size, page size) are settings; see src/config.
 */
export const nameBytesMax = 255;
export const pathDepthMax = 64;
export const pathBytesMax = 4096;
/** Serialized size of one node's properties. */
export const propertiesBytesMax = 1024 * 1024;
/** Nesting of objects and arrays in properties; deeper values are a mistake, and cost stack in every encoder. */
export const propertiesDepthMax = 32;
export const nodeTypeBytesMax = 128;
export const binaryPropertiesPerNodeMax = 64;
export const userNameBytesMax = 64;

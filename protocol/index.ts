export * from './cbor.js';
export * from './errors.js';
export * from './messages.js';
export * from './result.js';
export * from './topics.js';

export { checkPublish, checkSubscribe, checkWill } from './acl.js';
export {
  AEDES_TUNING,
  DEFAULT_CONNECT_RATE_PER_SECOND,
  DEFAULT_MAX_CONNECTIONS,
  MANAGER_RESERVED_CONNECTIONS,
  principalOf,
  startBroker,
} from './broker.js';
export { IndexedPersistence } from './indexed-persistence.js';
export { type LocalClient, type LocalMessageHandler, localClient } from './local-client.js';
export { RetainedIndex } from './retained-index.js';
export type {
  AuthContext,
  Authenticator,
  BrokerAddresses,
  BrokerOptions,
  EmbeddedBroker,
  Principal,
  TcpListenerOptions,
  TlsListenerOptions,
} from './types.js';

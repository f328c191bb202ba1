// The gateway: agents talk OpenAI / Anthropic protocols to it; every call is recorded token-exact.
export * from './errors.js';
export * from './upstream.js';
export * from './recorder.js';
export { CallTree } from './callTree.js';
export { DEFAULT_LIMITS, runChat, type ChatRequest, type ChoiceEvent, type ChoiceOutcome, type GatewayLimits } from './callRunner.js';
export { EngineUpstream, type EngineUpstreamOptions, type TokenGenerator } from './engineUpstream.js';
export { ScriptedFakeGenerator, type FakeScript } from './fakeGenerator.js';
export { SessionStore, type Session } from './sessions.js';
export { toChatMessages } from './anthropicMessages.js';
export { createGateway, type Gateway, type GatewayOptions } from './server.js';

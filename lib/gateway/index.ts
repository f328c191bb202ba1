// The gateway: agents talk OpenAI / Anthropic protocols to it; every call is recorded token-exact.
export * from './errors.js';
export * from './upstream.js';
export * from './recorder.js';
export { CallTree } from './callTree.js';
export { DEFAULT_LIMITS, runChat, type ChatRequest, type ChoiceEvent, type ChoiceOutcome, type GatewayLimits, type PromptRequest } from './callRunner.js';
export { EngineUpstream, type EngineUpstreamOptions, type TokenGenerator } from './engineUpstream.js';
export { OpenAICompatibleUpstream, type OpenAICompatibleUpstreamOptions } from './openaiUpstream.js';
export { openaiCompletionsRoutes } from './openaiCompletions.js';
export { ScriptedFakeGenerator, type FakeScript } from './fakeGenerator.js';
export { SessionStore, adminGuard, type Session, type SessionCounts, type SessionStoreOptions, type SessionsHeld } from './sessions.js';
export { toChatMessages } from './anthropicMessages.js';
export { createGateway, type Gateway, type GatewayOptions } from './server.js';
export { PoolRecorder, TOOL_CALL_ERROR_KINDS, toNewCall, type PoolRecorderOptions } from './poolRecorder.js';
export { poolRoutes, trajectoryJson } from './poolRoutes.js';
export { GatewayMetrics, MetricsRecorder, type MetricsOptions } from './metrics.js';
export { ServedVersion, MAX_POLICY_VERSION } from './servedVersion.js';
export { KeepAliveTransport, fetchTransport, type UpstreamTransport, type TransportRequest, type TransportResponse } from './upstreamHttp.js';
export { countChatTokens } from './callRunner.js';

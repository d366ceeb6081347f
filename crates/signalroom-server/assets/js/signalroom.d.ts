// Types of signalroom.js: requests and streams on top of an openvidu-browser Session.
import type { Connection, Session } from 'openvidu-browser';

export const REQUEST_TYPE: 'sr.request';
export const REPLY_TYPE: 'sr.reply';
export const STREAM_TYPE: 'sr.stream';
export const ACK_TYPE: 'sr.ack';
export const DEFAULT_MAX_FRAME_BYTES: number;
export const WINDOW_BYTES: number;
export const WINDOW_CHUNKS: number;
export const ANNOUNCE_GRACE_MS: number;

/** A participant: an openvidu-browser Connection, or its connection id. */
export type Target = Connection | string;

export type RequestErrorCode = 'timeout' | 'no-handler' | 'target-left' | 'handler-failed' | 'reply-too-big' | string;

/** Why a request failed. */
export class RequestError extends Error {
  readonly code: RequestErrorCode;
  readonly method: string;
  readonly target: string;
  /** The other side's message (the handler's error, for 'handler-failed'). */
  readonly remoteMessage: string;
}

/** A stream ended early: the sender aborted it (`reason`) or left ('sender left'). */
export class StreamAbortedError extends Error {
  readonly reason: string;
}

/** A request received by a handler. */
export interface Request {
  readonly method: string;
  readonly payload: string;
  readonly caller: Connection;
  readonly id: string;
  /** Whether the caller gave up (timed out, cancelled): the reply will be dropped. */
  readonly cancelled: boolean;
}

export type RequestHandler = (request: Request) => string | void | Promise<string | void>;

export interface StreamOptions {
  /** Recipients (default: everyone else in the session). */
  to?: Target[] | null;
  /** What readers choose streams by. */
  topic?: string;
  /** The size to expect, in bytes (UTF-8 for text), shown to readers as `total`. */
  total?: number | null;
  /** Bytes (Uint8Array) instead of text. */
  binary?: boolean;
}

/** A stream being written. */
export class StreamWriter {
  readonly id: string;
  readonly topic: string;
  readonly written: number;
  /** Whether a write() is waiting for a reader to catch up. */
  readonly waiting: boolean;
  write(data: string | Uint8Array): Promise<void>;
  close(): Promise<void>;
  abort(reason?: string): Promise<void>;
}

/** A stream being received; iterate its chunks in order, or await the whole. */
export class IncomingStream implements AsyncIterable<string | Uint8Array> {
  readonly id: string;
  readonly sender: Connection;
  readonly topic: string;
  readonly kind: 'text' | 'bytes';
  /** The size the sender announced, in bytes, or null. */
  readonly total: number | null;
  /** Bytes received so far. */
  readonly received: number;
  readonly done: boolean;
  /** Called after each chunk arrives. */
  onprogress: ((stream: IncomingStream) => void) | null;
  [Symbol.asyncIterator](): AsyncIterator<string | Uint8Array>;
  text(): Promise<string>;
  bytes(): Promise<Uint8Array>;
}

export interface RoomOptions {
  /** The largest frame the server accepts (default OpenVidu's 51200). */
  maxFrameBytes?: number;
}

/** Requests and streams on one openvidu-browser Session. */
export class Room {
  readonly session: Session;
  readonly maxFrameBytes: number;
  /** Asks `to` to run its handler of `method`; resolves with its reply, rejects with a RequestError. */
  request(to: Target, method: string, payload?: string, options?: { timeout?: number | null }): Promise<string>;
  /** Answers the requests of `method` with `fn` (null: stop answering). */
  handle(method: string, fn: RequestHandler | null): void;
  openStream(options?: StreamOptions): StreamWriter;
  sendText(text: string, options?: { to?: Target[] | null; topic?: string }): Promise<void>;
  /** Calls `fn` for every stream of `topic` (every topic when null) that begins; returns an unsubscriber. */
  onStream(topic: string | null, fn: (stream: IncomingStream) => unknown): () => void;
  detach(): void;
}

/** Adds requests and streams to an openvidu-browser Session. */
export function attach(session: Session, options?: RoomOptions): Room;

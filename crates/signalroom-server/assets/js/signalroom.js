// signalroom's requests and streams for openvidu-browser: request/handle and text or byte streams
// of any size on top of an unmodified openvidu-browser Session, over ordinary signals, so that
// they pass through any OpenVidu 2.x server. The envelope is documented in docs/protocol.md
// ("Requests and streams") and is the same as the Python package's.
//
//   import { attach } from '/signalroom.js';        // served by signalroom's server
//   const room = attach(session);                      // an openvidu-browser Session
//   room.handle('ask', async (request) => `you asked ${request.payload}`);
//   const reply = await room.request(bot, 'ask', 'what time is it?', { timeout: 5000 });
//   room.onStream('answer', async (stream) => { for await (const piece of stream) show(piece); });
//   await room.sendText(longText, { to: [bob], topic: 'report' });

export const REQUEST_TYPE = 'sr.request';
export const REPLY_TYPE = 'sr.reply';
export const STREAM_TYPE = 'sr.stream';
export const ACK_TYPE = 'sr.ack';

// OpenVidu's WebSocket frame limit (50 KiB); signalroom's server says the same by default.
export const DEFAULT_MAX_FRAME_BYTES = 51200;
// A writer waits while a reader that acknowledges is this far behind.
export const WINDOW_BYTES = 4 * 1024 * 1024;
export const WINDOW_CHUNKS = 1024;
// A recipient silent once the window is full is not waited for after this long (ms).
export const ANNOUNCE_GRACE_MS = 5000;
const ACK_BYTES = WINDOW_BYTES / 4;
const ACK_CHUNKS = WINDOW_CHUNKS / 4;
const IN_FLIGHT = 32;
const FRAME_MARGIN = 64;
const FRAME_SKELETON = '{"jsonrpc":"2.0","id":,"method":"sendMessage","params":{"message":""}}'.length + 20;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Why a request failed: `code` is 'timeout', 'no-handler', 'target-left', 'handler-failed' or 'reply-too-big'. */
export class RequestError extends Error {
  constructor(code, text, { method = '', target = '', message = '' } = {}) {
    super(text);
    this.name = 'RequestError';
    this.code = code;
    this.method = method;
    this.target = target;
    this.remoteMessage = message;
  }
}

/** A stream ended early: the sender aborted it (`reason`) or left. */
export class StreamAbortedError extends Error {
  constructor(text, reason) {
    super(text);
    this.name = 'StreamAbortedError';
    this.reason = reason;
  }
}

function specials(text) {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 34 || c === 92) n++;
  }
  return n;
}

// Bytes `escaped` (already escaped once, as in the envelope) takes in a frame: escaped twice more.
function cost(escaped) {
  return encoder.encode(escaped).length + 3 * specials(escaped);
}

function utf8Length(text) {
  return encoder.encode(text).length;
}

function toBase64(bytes) {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function idOf(target) {
  return typeof target === 'string' ? target : target.connectionId;
}

class Deferred {
  constructor() {
    this.promise = new Promise((resolve, reject) => { this.resolve = resolve; this.reject = reject; });
  }
}

/** A stream being written: write(), close(), abort(). */
export class StreamWriter {
  constructor(room, id, { to, topic, total, binary }) {
    this.room = room;
    this.id = id;
    this.topic = topic;
    this.to = to;  // connection ids, or null for everyone
    this.total = total;
    this.binary = binary;
    this.written = 0;
    this.chunks = 0;
    this.over = false;
    this.inFlight = [];
    this.readers = new Map();
    this.presumed = new Set(to || [...room.session.remoteConnections.keys()]);
    this.wake = null;
    this.error = null;
    const head = { topic, kind: binary ? 'bytes' : 'text' };
    if (total !== undefined && total !== null) head.total = total;
    this.open = head;
    const message = JSON.stringify({ to: to || [], data: '', type: `signal:${STREAM_TYPE}` });
    this.messageCost = message.length + specials(message);
  }

  get waiting() { return this.wake !== null; }

  header() {
    const h = { id: this.id, n: this.chunks };
    if (this.open) h.open = this.open;
    return h;
  }

  room_(header) {
    const skeleton = JSON.stringify({ ...header, data: '' });
    return this.room.maxFrameBytes - (FRAME_SKELETON + this.messageCost + cost(skeleton) + FRAME_MARGIN);
  }

  /** Sends text (or a Uint8Array for a binary stream) of any size; waits while a reader is too far behind. */
  async write(data) {
    if (this.over) throw new Error(`stream ${this.id} is closed`);
    if (this.binary) {
      const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
      let start = 0;
      do {
        const header = this.header();
        const n = Math.max(3, Math.floor(this.room_(header) / 4) * 3);
        const piece = bytes.subarray(start, start + n);
        await this.send(header, toBase64(piece), piece.length);
        start += n;
      } while (start < bytes.length);
      return;
    }
    const text = String(data);
    let start = 0;
    do {
      const header = this.header();
      const room = this.room_(header);
      let n = Math.min(text.length - start, room);
      let piece;
      for (;;) {
        let end = start + n;
        // Never split a surrogate pair.
        const code = text.charCodeAt(end - 1);
        if (end < text.length && code >= 0xd800 && code <= 0xdbff && n > 1) end -= 1;
        piece = text.slice(start, end);
        const size = cost(JSON.stringify(piece).slice(1, -1));
        if (size <= room || n <= 1) { n = end - start; break; }
        n = Math.max(1, Math.min(n - 1, Math.floor((n * room) / size) - 8));
      }
      await this.send(header, piece, utf8Length(piece));
      start += n;
    } while (start < text.length);
  }

  blocked() {
    const behind = (read, chunks) => this.written - read >= WINDOW_BYTES || this.chunks - chunks >= WINDOW_CHUNKS;
    if (this.presumed.size > 0 && behind(0, 0)) return true;
    for (const [read, chunks] of this.readers.values()) if (behind(read, chunks)) return true;
    return false;
  }

  async flow() {
    while (this.blocked()) {
      if (this.error) throw this.error;
      const woken = new Deferred();
      this.wake = woken;
      const timer = setTimeout(() => { this.presumed.clear(); woken.resolve(); }, ANNOUNCE_GRACE_MS);
      await woken.promise;
      clearTimeout(timer);
      this.wake = null;
    }
    if (this.error) throw this.error;
  }

  nudge() {
    if (this.wake) this.wake.resolve();
  }

  async send(header, chunk, size, extra = {}) {
    await this.flow();
    this.open = null;
    this.chunks += 1;
    this.written += size;
    this.push({ ...header, data: chunk, ...extra });
    while (this.inFlight.length > IN_FLIGHT) await this.inFlight.shift();
  }

  push(body) {
    this.inFlight.push(this.room.signal(JSON.stringify(body), STREAM_TYPE, this.to));
  }

  async finish(how) {
    if (this.over) return;
    this.over = true;
    const header = this.header();
    this.open = null;
    this.chunks += 1;
    this.push({ ...header, ...how });
    try {
      while (this.inFlight.length) await this.inFlight.shift();
    } finally {
      this.room.writers.delete(this.id);
    }
  }

  /** Ends the stream. */
  close() { return this.finish({ end: true }); }

  /** Ends the stream early: readers get a StreamAbortedError with `reason`. */
  abort(reason = 'aborted by the sender') { return this.finish({ abort: reason || 'aborted' }); }

  onAck(reader, read, chunks, skip) {
    if (this.to && !this.to.includes(reader)) return;
    this.presumed.delete(reader);
    if (skip) this.readers.delete(reader); else this.readers.set(reader, [read, chunks]);
    this.nudge();
  }

  readerLeft(reader) {
    this.presumed.delete(reader);
    this.readers.delete(reader);
    this.nudge();
  }
}

/** A stream being received: `for await (const piece of stream)`, or `await stream.text()`. */
export class IncomingStream {
  constructor(room, id, sender, head) {
    this.room = room;
    this.id = id;
    this.sender = sender;  // an openvidu-browser Connection
    this.topic = String(head.topic || '');
    this.kind = head.kind === 'bytes' ? 'bytes' : 'text';
    this.total = Number.isInteger(head.total) ? head.total : null;
    this.received = 0;
    this.ended = false;
    this.error = null;
    this.next = 1;
    this.queue = [];
    this.arrived = null;
    this.read = 0;
    this.readChunks = 0;
    this.acked = [0, 0];
    /** Called with the stream after each chunk arrives (progress: `received`, `total`). */
    this.onprogress = null;
  }

  get done() { return this.ended || this.error !== null; }

  push(message) {
    if (typeof message.data === 'string' && message.data) {
      const chunk = this.kind === 'bytes' ? fromBase64(message.data) : message.data;
      const size = this.kind === 'bytes' ? chunk.length : utf8Length(chunk);
      this.received += size;
      this.queue.push([chunk, size]);
    }
    if ('abort' in message) {
      this.fail(new StreamAbortedError(`stream ${this.id} was aborted: ${message.abort}`, String(message.abort)));
    } else if (message.end) {
      this.ended = true;
    }
    if (this.onprogress) {
      try { this.onprogress(this); } catch (e) { console.error(e); }
    }
    this.wakeReader();
  }

  fail(error) {
    if (!this.ended && !this.error) {
      this.error = error;
      this.wakeReader();
    }
  }

  wakeReader() {
    if (this.arrived) { const a = this.arrived; this.arrived = null; a.resolve(); }
  }

  ack() {
    if (this.ended && this.queue.length === 0) return;
    this.acked = [this.read, this.readChunks];
    this.room.quietly(JSON.stringify({ id: this.id, read: this.read, n: this.readChunks }), ACK_TYPE, [this.sender.connectionId]);
  }

  consumed(size) {
    this.read += size;
    this.readChunks += 1;
    if (this.read - this.acked[0] >= ACK_BYTES || this.readChunks - this.acked[1] >= ACK_CHUNKS) this.ack();
  }

  async nextChunk() {
    for (;;) {
      if (this.queue.length) {
        const [chunk, size] = this.queue.shift();
        this.consumed(size);
        return { value: chunk, done: false };
      }
      if (this.error) throw this.error;
      if (this.ended) return { value: undefined, done: true };
      this.arrived = new Deferred();
      await this.arrived.promise;
    }
  }

  [Symbol.asyncIterator]() { return { next: () => this.nextChunk() }; }

  /** The whole text, once the stream ended. */
  async text() {
    const parts = [];
    for await (const chunk of this) parts.push(chunk);
    return this.kind === 'bytes' ? decoder.decode(concat(parts)) : parts.join('');
  }

  /** The whole content as bytes, once the stream ended. */
  async bytes() {
    const parts = [];
    for await (const chunk of this) parts.push(typeof chunk === 'string' ? encoder.encode(chunk) : chunk);
    return concat(parts);
  }
}

function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

/** Requests and streams on one openvidu-browser Session. Made by attach(). */
export class Room {
  constructor(session, { maxFrameBytes = DEFAULT_MAX_FRAME_BYTES } = {}) {
    this.session = session;
    this.maxFrameBytes = maxFrameBytes;
    this.ids = 0;
    this.pending = new Map();
    this.handlers = new Map();
    this.serving = new Map();
    this.writers = new Map();
    this.incoming = new Map();
    this.streamHandlers = [];
    this.listeners = [
      [`signal:${REQUEST_TYPE}`, (e) => this.onRequest(e)],
      [`signal:${REPLY_TYPE}`, (e) => this.onReply(e)],
      [`signal:${STREAM_TYPE}`, (e) => this.onChunk(e)],
      [`signal:${ACK_TYPE}`, (e) => this.onAck(e)],
      ['connectionDestroyed', (e) => this.left(e.connection.connectionId)],
      ['sessionDisconnected', (e) => this.ended(e.reason)],
    ];
    for (const [name, fn] of this.listeners) session.on(name, fn);
  }

  /** Stops handling requests and streams on the session. */
  detach() {
    for (const [name, fn] of this.listeners) this.session.off(name, fn);
  }

  connectionOf(id) {
    if (this.session.connection && this.session.connection.connectionId === id) return this.session.connection;
    return this.session.remoteConnections.get(id) || { connectionId: id };
  }

  signal(data, type, to) {
    const options = { data, type };
    if (to) options.to = to.map((id) => this.connectionOf(id));
    return this.session.signal(options);
  }

  quietly(data, type, to) {
    this.signal(data, type, to).catch((e) => console.debug('signalroom: a signal was not sent', e));
  }

  /**
   * Asks participant `to` (a Connection or its id) to run its handler of `method`; resolves with its
   * reply string, or rejects with a RequestError.
   */
  request(to, method, payload = '', { timeout = 5000 } = {}) {
    const target = idOf(to);
    const id = String(++this.ids);
    const waiting = new Deferred();
    const entry = { waiting, method, target, timer: null };
    this.pending.set(id, entry);
    const fail = (code, text) => waiting.reject(new RequestError(code, `request '${method}' to ${target}: ${text}`, { method, target }));
    if (timeout !== null && timeout !== undefined) {
      entry.timer = setTimeout(() => {
        fail('timeout', `no reply within ${timeout} ms`);
        this.quietly(JSON.stringify({ id, cancel: true }), REQUEST_TYPE, [target]);
      }, timeout);
    }
    this.signal(JSON.stringify({ id, method, payload: String(payload) }), REQUEST_TYPE, [target]).catch((e) => {
      if (e && e.code === 601) fail('target-left', 'not in the session');
      else waiting.reject(e);
    });
    return waiting.promise.finally(() => {
      clearTimeout(entry.timer);
      this.pending.delete(id);
    });
  }

  /** Makes `fn(request)` (request: {method, payload, caller}) answer the requests of `method`. */
  handle(method, fn) {
    if (fn) this.handlers.set(method, fn); else this.handlers.delete(method);
  }

  onReply(event) {
    let reply;
    try { reply = JSON.parse(event.data); } catch { return; }
    const entry = this.pending.get(String(reply.id));
    if (!entry || !event.from || event.from.connectionId !== entry.target) return;
    if (reply.error) {
      const { code = 'request-failed', message = '' } = reply.error;
      const what = { 'no-handler': `no handler of '${entry.method}' there`, 'handler-failed': `its handler failed: ${message}`, 'reply-too-big': `the reply was too big: ${message}` }[code] || `${code}: ${message}`;
      entry.waiting.reject(new RequestError(code, `request '${entry.method}' to ${entry.target}: ${what}`, { method: entry.method, target: entry.target, message }));
    } else {
      entry.waiting.resolve(typeof reply.payload === 'string' ? reply.payload : JSON.stringify(reply.payload ?? ''));
    }
  }

  async onRequest(event) {
    if (!event.from) return;
    let message;
    try { message = JSON.parse(event.data); } catch { return; }
    const caller = event.from;
    const id = String(message.id);
    const key = `${caller.connectionId} ${id}`;
    if (message.cancel) {
      const serving = this.serving.get(key);
      if (serving) serving.cancelled = true;
      return;
    }
    const fn = this.handlers.get(message.method);
    const reply = (body) => this.sendReply(caller.connectionId, { id, ...body });
    if (!fn) {
      reply({ error: { code: 'no-handler', message: `no handler of '${message.method}'` } });
      return;
    }
    const state = { cancelled: false };
    this.serving.set(key, state);
    try {
      const result = await fn({ method: message.method, payload: String(message.payload ?? ''), caller, id, get cancelled() { return state.cancelled; } });
      if (!state.cancelled) {
        if (typeof result === 'string' || result === undefined || result === null) reply({ payload: result ?? '' });
        else reply({ error: { code: 'handler-failed', message: `the handler returned ${typeof result}, not a string` } });
      }
    } catch (error) {
      if (!state.cancelled) reply({ error: { code: 'handler-failed', message: `${error && error.name ? error.name : 'Error'}: ${error && error.message !== undefined ? error.message : error}` } });
    } finally {
      this.serving.delete(key);
    }
  }

  sendReply(to, body) {
    const data = JSON.stringify(body);
    const size = FRAME_SKELETON + cost(JSON.stringify(data).slice(1, -1)) + 100;
    if (size > this.maxFrameBytes) {
      this.quietly(JSON.stringify({ id: body.id, error: { code: 'reply-too-big', message: `the reply makes a frame of about ${size} bytes, over the limit of ${this.maxFrameBytes}` } }), REPLY_TYPE, [to]);
      return;
    }
    this.quietly(data, REPLY_TYPE, [to]);
  }

  /** A stream to everyone else, or to `to` (Connections or ids): write(), close(), abort(). */
  openStream({ to = null, topic = '', total = null, binary = false } = {}) {
    const writer = new StreamWriter(this, String(++this.ids), { to: to ? to.map(idOf) : null, topic, total, binary });
    this.writers.set(writer.id, writer);
    return writer;
  }

  /** Sends `text`, of any size, as one stream. */
  async sendText(text, { to = null, topic = '' } = {}) {
    const writer = this.openStream({ to, topic, total: utf8Length(text) });
    try {
      await writer.write(text);
    } catch (error) {
      await writer.abort(String(error)).catch(() => {});
      throw error;
    }
    await writer.close();
  }

  /** Calls `fn(stream)` (an IncomingStream) for every stream of `topic` (every topic when null) that begins. */
  onStream(topic, fn) {
    this.streamHandlers.push([topic, fn]);
    return () => { this.streamHandlers = this.streamHandlers.filter((h) => h[1] !== fn); };
  }

  onChunk(event) {
    const sender = event.from;
    if (!sender || (this.session.connection && sender.connectionId === this.session.connection.connectionId)) return;
    let message;
    try { message = JSON.parse(event.data); } catch { return; }
    const id = String(message.id);
    const key = `${sender.connectionId} ${id}`;
    let stream = this.incoming.get(key);
    if (!stream) {
      if (message.n !== 0 || typeof message.open !== 'object' || message.open === null) return;
      stream = new IncomingStream(this, id, sender, message.open);
      const handlers = this.streamHandlers.filter(([topic]) => topic === null || topic === undefined || topic === stream.topic);
      if (!handlers.length) {
        this.quietly(JSON.stringify({ id, skip: true }), ACK_TYPE, [sender.connectionId]);
        return;
      }
      this.incoming.set(key, stream);
      stream.push(message);
      stream.ack();
      for (const [, fn] of handlers) {
        Promise.resolve().then(() => fn(stream)).catch((e) => console.error('signalroom: a stream handler failed', e));
      }
    } else if (message.n !== stream.next) {
      stream.fail(new StreamAbortedError(`stream ${id}: chunk ${stream.next} is missing`, 'chunks missing'));
    } else {
      stream.next += 1;
      stream.push(message);
    }
    if (stream.done) this.incoming.delete(key);
  }

  onAck(event) {
    if (!event.from) return;
    let message;
    try { message = JSON.parse(event.data); } catch { return; }
    const writer = this.writers.get(String(message.id));
    if (writer) writer.onAck(event.from.connectionId, Number(message.read) || 0, Number(message.n) || 0, Boolean(message.skip));
  }

  left(connectionId) {
    for (const entry of this.pending.values()) {
      if (entry.target === connectionId) {
        entry.waiting.reject(new RequestError('target-left', `request '${entry.method}' to ${connectionId}: it left the session before replying`, { method: entry.method, target: connectionId }));
      }
    }
    for (const [key, stream] of this.incoming) {
      if (key.startsWith(`${connectionId} `)) {
        stream.fail(new StreamAbortedError(`stream ${stream.id}: its sender ${connectionId} left the session`, 'sender left'));
        this.incoming.delete(key);
      }
    }
    for (const writer of this.writers.values()) writer.readerLeft(connectionId);
  }

  ended(reason) {
    for (const entry of this.pending.values()) {
      entry.waiting.reject(new RequestError('target-left', `the session ended (${reason}) before the reply came`, { method: entry.method, target: entry.target }));
    }
    for (const stream of this.incoming.values()) stream.fail(new StreamAbortedError(`the session ended (${reason})`, String(reason)));
    this.incoming.clear();
    for (const writer of this.writers.values()) { writer.error = new Error(`the session ended (${reason})`); writer.nudge(); }
  }
}

/** Adds requests and streams to an openvidu-browser Session. */
export function attach(session, options = {}) {
  return new Room(session, options);
}

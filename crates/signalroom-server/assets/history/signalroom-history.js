// Signal history for openvidu-browser pages: a signalroom extension, as an ES module served by
// signalroom at /signalroom-history.js.
//
//   import { withHistory } from '/signalroom-history.js';
//   const session = new OpenVidu().initSession();
//   const history = withHistory(session);       // before session.connect
//   await session.connect(token);
//   for (const s of await history) show(s.from, s.type, s.data);   // then live signals
//
// The join asks for the session's signal history (`"history": true` in `joinRoom`'s params) and
// the answer carries it (`signalHistory`): the signals the session kept (its `signalHistory`
// setting), oldest first, all sent before the join. The promise resolves right after `connect`'s,
// before any live signal is handled, so a page that shows them first shows the conversation in
// order with nothing twice. Against a server that keeps none (or a real OpenVidu) it resolves
// to [].

/**
 * Asks for `session`'s signal history on its next `connect`.
 * @param {object} session an openvidu-browser Session, not connected yet
 * @returns {Promise<Array<{seq: number, createdAt: number, from: string|null, connection: object|undefined,
 *   type: string, data: string, history: true}>>} the signals kept, oldest first; `type` without
 *   `signal:` (as openvidu-browser's SignalEvent), `connection` the sender's Connection while it is
 *   still in the session
 */
export function withHistory(session) {
  const ov = session.openvidu;
  const send = ov.sendRequest;
  return new Promise((resolve) => {
    ov.sendRequest = function (method, params, callback) {
      if (method !== 'joinRoom' || typeof callback !== 'function') {
        return send.apply(this, arguments);
      }
      ov.sendRequest = send;
      return send.call(this, method, Object.assign({}, params, { history: true }), (error, response) => {
        callback(error, response);
        const kept = !error && response && Array.isArray(response.signalHistory) ? response.signalHistory : [];
        resolve(kept.map((entry) => toSignal(session, entry)));
      });
    };
  });
}

function toSignal(session, entry) {
  const from = entry.from === undefined ? null : entry.from;
  let connection;
  if (from !== null) {
    connection = session.connection && session.connection.connectionId === from
      ? session.connection
      : session.remoteConnections.get(from);
  }
  const type = typeof entry.type === 'string' ? entry.type.replace(/^signal:/, '') : '';
  return { seq: entry.seq, createdAt: entry.createdAt, from, connection, type, data: entry.data || '', history: true };
}

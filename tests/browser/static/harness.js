// Test harness around the real openvidu-browser: one participant per page, steered from pytest.
// Every event is recorded as a plain object in window.events; every call returns plain JSON.
'use strict';

window.events = [];

window.harness = (() => {
  let session = null;

  function record(kind, fields) {
    window.events.push(Object.assign({ seq: window.events.length, at: Date.now(), kind }, fields));
  }

  // A plain summary of a SignalEvent. `fromDefined` tells "no from" (server signal) from a null.
  function signalFields(event) {
    return {
      type: event.type,
      data: event.data,
      from: event.from ? event.from.connectionId : null,
      fromDefined: event.from !== undefined,
    };
  }

  // An openvidu-browser error ({code, message} from the server, or an OpenViduError) as plain JSON.
  function errorFields(error) {
    return {
      ok: false,
      code: error && error.code !== undefined ? error.code : null,
      name: error && error.name !== undefined ? String(error.name) : null,
      message: error && error.message !== undefined ? String(error.message) : String(error),
    };
  }

  // Record `session.on(<signalType>)` events too, e.g. listenSignal('signal:other').
  function listenSignal(signalType) {
    session.on(signalType, (e) => record(signalType, signalFields(e)));
  }

  // Create the OpenVidu instance and session, attach recorders, connect with `token` and `metadata`.
  // Resolves {ok: true, connectionId} or {ok: false, code, name, message}.
  async function join(token, metadata) {
    const ov = new OpenVidu();
    session = ov.initSession();
    session.on('connectionCreated', (e) =>
      record('connectionCreated', { connectionId: e.connection.connectionId, data: e.connection.data }));
    session.on('connectionDestroyed', (e) =>
      record('connectionDestroyed', { connectionId: e.connection.connectionId, reason: e.reason }));
    session.on('sessionDisconnected', (e) => record('sessionDisconnected', { reason: e.reason }));
    session.on('reconnecting', () => record('reconnecting', {}));
    session.on('reconnected', () => record('reconnected', {}));
    session.on('exception', (e) => record('exception', { name: e.name, message: e.message }));
    session.on('signal', (e) => record('signal', signalFields(e)));
    listenSignal('signal:chat');
    try {
      await session.connect(token, metadata);
      return { ok: true, connectionId: session.connection.connectionId };
    } catch (error) {
      return errorFields(error);
    }
  }

  // A Connection object for a connection id: a known one, or a stand-in for an unknown id.
  function connectionFor(connectionId) {
    if (session.connection && session.connection.connectionId === connectionId) {
      return session.connection;
    }
    return session.remoteConnections.get(connectionId) || { connectionId };
  }

  // session.signal({data, type, to}) where `to` is an array of connection ids (omitted: broadcast).
  // Resolves {ok: true} or {ok: false, code, name, message}.
  async function signal({ data, type, to }) {
    const options = { data, type };
    if (to !== undefined) {
      options.to = to.map(connectionFor);
    }
    try {
      await session.signal(options);
      return { ok: true };
    } catch (error) {
      return errorFields(error);
    }
  }

  function disconnect() {
    session.disconnect();
  }

  return {
    join, signal, disconnect, listenSignal,
    get session() { return session; },
  };
})();

window.harnessReady = typeof OpenVidu === 'function';

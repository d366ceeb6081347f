// The chat page: a token from the REST API, then openvidu-browser's session.connect and
// session.signal({type: 'chat'}). Everyone in the session sees every message, Python bots too;
// a newcomer sees the conversation so far (the session keeps its last chat messages: signalroom's
// signal history). "@name question" also asks participant `name` (a bot) through signalroom.js: a
// request of method `ask`; an answer the bot streams (topic `answer`) appears as it arrives.
import { withHistory } from '/signalroom-history.js';

(() => {
  const $ = (id) => document.getElementById(id);
  // What the sessions this page creates keep: their last 100 chat messages for a day.
  const HISTORY = { size: 100, ttlSeconds: 86400, types: ['chat'] };
  let session = null;
  let extras = null; // signalroom.js on the session: requests and streams
  let me = null;

  // Who a connection is: its client data (`name`, or `name%/%server data`), else its id (a
  // participant that joined without any, e.g. with a token from `signalroom token`).
  const nameOf = (connection) => (connection.data ? connection.data.split('%/%')[0] : connection.connectionId);
  // Who sent a signal: a participant, or the server (a signal sent through the REST API).
  const senderOf = (event) => (event.from ? nameOf(event.from) : 'server');
  // What the page says when the session is over, by openvidu-browser's reason.
  const ended = {
    disconnect: 'You left.',
    openviduServerStopped: 'The server stopped: the connection is gone.',
    networkDisconnect: 'The connection to the server is gone.',
    forceDisconnectByServer: 'You were removed from the session.',
    forceDisconnectByUser: 'You were removed from the session.',
    sessionClosedByServer: 'The session was closed.',
  };

  // Participants whose answer came as a stream (their reply is then not shown twice).
  const answered = new Set();

  // A message being written: its text grows as pieces arrive. Returns the text node.
  function showGrowing(who) {
    const item = document.createElement('li');
    item.className = 'streaming';
    const name = document.createElement('span');
    name.className = 'who';
    name.textContent = who;
    const text = document.createTextNode('');
    item.append(name, text);
    $('messages').append(item);
    return { item, text };
  }

  // An answer streamed by a participant: shown piece by piece.
  async function showStream(stream) {
    const { item, text } = showGrowing(nameOf(stream.sender));
    try {
      for await (const piece of stream) {
        text.data += piece;
        $('messages').scrollTop = $('messages').scrollHeight;
      }
      item.className = 'answer';
    } catch (e) {
      item.className = 'answer';
      show(null, `The answer was cut short: ${e && e.message ? e.message : e}`);
    }
  }

  // "@name question": the participant called `name`, and the question; else null.
  function addressed(text) {
    const match = /^@(\S+)\s+(.+)$/s.exec(text);
    if (!match || !session) return null;
    for (const c of session.remoteConnections.values()) {
      if (nameOf(c) === match[1]) return { to: c, question: match[2] };
    }
    return null;
  }

  async function ask(to, question) {
    try {
      const reply = await extras.request(to, 'ask', question, { timeout: 60000 });
      if (reply && !answered.has(to.connectionId)) show(nameOf(to), reply, false);
    } catch (e) {
      const why = e && e.code === 'no-handler' ? `${nameOf(to)} does not answer questions` : (e && e.message ? e.message : e);
      show(null, `No answer: ${why}`);
    } finally {
      answered.delete(to.connectionId);
    }
  }
  function show(who, text, mine) {
    const item = document.createElement('li');
    if (who === null) {
      item.className = 'notice';
      item.textContent = text;
    } else {
      if (mine) item.className = 'me';
      const name = document.createElement('span');
      name.className = 'who';
      name.textContent = who;
      item.append(name, document.createTextNode(text));
    }
    $('messages').append(item);
    $('messages').scrollTop = $('messages').scrollHeight;
  }

  function people() {
    const names = [nameOf(session.connection)];
    for (const c of session.remoteConnections.values()) names.push(nameOf(c));
    $('people').textContent = `${names.length} here: ${names.join(', ')}`;
  }

  // POST to the REST API; a 409 (the session exists already) is fine for the session.
  async function api(path, body, secret) {
    const response = await fetch(`/openvidu/api${path}`, {
      method: 'POST',
      headers: { 'Authorization': 'Basic ' + btoa('OPENVIDUAPP:' + secret), 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (response.status === 401) throw new Error('The secret is not right.');
    if (!response.ok && response.status !== 409) {
      const problem = await response.json().catch(() => ({}));
      throw new Error(problem.message || `The server answered ${response.status}.`);
    }
    return response.status === 409 ? null : response.json();
  }

  async function join(event) {
    event.preventDefault();
    $('error').textContent = '';
    $('enter').disabled = true;
    const room = $('session').value.trim();
    const secret = $('secret').value;
    me = $('name').value.trim();
    try {
      // signalroom keeps the last chat messages of the sessions this page makes (a session that
      // exists already keeps its own setting).
      await api('/sessions', { customSessionId: room, signalHistory: HISTORY }, secret);
      const connection = await api(`/sessions/${encodeURIComponent(room)}/connection`, {}, secret);
      const ov = new OpenVidu();
      ov.enableProdMode();
      session = ov.initSession();
      const history = withHistory(session);
      session.on('signal:chat', (e) => show(senderOf(e), e.data, e.from && e.from.connectionId === session.connection.connectionId));
      session.on('connectionCreated', (e) => {
        if (session.connection && e.connection.connectionId !== session.connection.connectionId) {
          show(null, `${nameOf(e.connection)} joined`);
        }
        if (session.connection) people();
      });
      session.on('connectionDestroyed', (e) => { show(null, `${nameOf(e.connection)} left`); people(); });
      session.on('reconnecting', () => show(null, 'Connection lost: reconnecting…'));
      session.on('reconnected', () => { show(null, 'Reconnected.'); people(); });
      session.on('sessionDisconnected', (e) => {
        // Nobody is known to be here any more: the list is cleared, not left stale.
        $('people').textContent = 'not connected';
        show(null, `${ended[e.reason] || 'The connection is gone.'} (${e.reason})`);
        $('text').disabled = $('send').disabled = $('leave').disabled = true;
      });
      const signalroom = await import('/signalroom.js');
      extras = signalroom.attach(session);
      extras.onStream('answer', (stream) => { answered.add(stream.sender.connectionId); return showStream(stream); });
      await session.connect(connection.token, me);
      const earlier = await history;
      if (earlier.length > 0) {
        show(null, 'Earlier in this session:');
        for (const s of earlier) {
          const mine = s.from !== null && s.from === session.connection.connectionId;
          show(s.from === null ? 'server' : s.connection ? nameOf(s.connection) : s.from, s.data, mine);
        }
        show(null, 'Now:');
      }
      $('join').hidden = true;
      $('room').hidden = false;
      $('title').textContent = room;
      people();
      $('text').focus();
    } catch (e) {
      $('error').textContent = e && e.message ? e.message : String(e);
      session = null;
    } finally {
      $('enter').disabled = false;
    }
  }

  async function say(event) {
    event.preventDefault();
    const text = $('text').value;
    if (!text || !session) return;
    $('text').value = '';
    try {
      await session.signal({ type: 'chat', data: text });
    } catch (e) {
      show(null, `Not sent: ${e && e.message ? e.message : e}`);
      return;
    }
    const question = addressed(text);
    if (question) ask(question.to, question.question);
  }

  $('join').addEventListener('submit', join);
  $('say').addEventListener('submit', say);
  $('leave').addEventListener('click', () => { if (session) session.disconnect(); });
  // A server on the development secret says so: the field is filled in.
  fetch('/chat/config.json').then((r) => r.json()).then((config) => {
    if (config.developmentSecret && !$('secret').value) $('secret').value = config.developmentSecret;
  }).catch(() => {});
  window.chatReady = true;
})();

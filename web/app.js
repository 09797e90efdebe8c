// Parley's browser client: push-to-talk and typed input over the /ws protocol, streamed reply
// text, and gapless playback of each chunk's PCM audio. Plain standard APIs (Chromium, Firefox).
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $('status'), newSession: $('new-session'), notices: $('notices'), errors: $('errors'),
    log: $('log'), empty: $('empty'), partial: $('partial'), talk: $('talk'),
    interrupt: $('interrupt'), playAudio: $('play-audio'), form: $('text-form'),
    input: $('text-input'),
  };
  const scroller = document.querySelector('main');

  // Read by the browser tests; samplesPlayed counts samples handed to the audio graph.
  const parley = (window.parley = {
    samplesPlayed: 0, chunks: 0, audioChunks: 0, lastTimings: null, state: 'connecting', sessionId: null,
  });

  const SESSION_KEY = 'parley.session_id';
  const MAX_INPUT_RATE = 48000; // the server's limit for start.sample_rate
  const MAX_TEXT_BYTES = 4096;

  // ---- connection state -------------------------------------------------------------------

  let ws = null;
  let isReady = false;
  let everReady = false;
  let backoffMs = 500;
  let reconnectTimer = 0;
  let server = { llm: true, tts: true, rate: 22050 };
  let shownSession = null; // whose turns the log shows
  // Typed turns use the tts flag of the last `start`; primeSession() sends one when none was sent yet.
  let startSent = false;
  let primeStops = 0;      // stops sent only to configure the session; their empty finals are ignored
  let ttsRequested = true; // the tts flag of the last start

  // ---- turn state ---------------------------------------------------------------------------

  let pressed = false;      // push-to-talk held (mouse, touch or space)
  let recording = false;    // start sent, stop not yet
  let awaitingFinal = false;
  let replyActive = false;  // a reply was asked for and has not ended
  let dropping = false;     // after a local interrupt: ignore the old reply until the server confirms
  let expectAudio = null;   // the text_chunk whose binary audio comes next
  const replies = new Map(); // turn_id -> reply element

  // ---- audio --------------------------------------------------------------------------------

  let ctx = null;
  let mic = null; // { stream, node, rate }
  let micPromise = null;
  let nextTime = 0;
  const sources = new Set();

  function audioContext() {
    if (!ctx) ctx = new AudioContext();
    if (ctx.state === 'suspended') ctx.resume().catch(() => {});
    return ctx;
  }

  function playPcm(buf, chunkId) {
    const c = audioContext();
    const pcm = new Int16Array(buf, 0, buf.byteLength >> 1);
    if (!pcm.length) return;
    const audio = c.createBuffer(1, pcm.length, server.rate);
    const ch = audio.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
    const src = c.createBufferSource();
    src.buffer = audio;
    src.connect(c.destination);
    // Back to back with the previous chunk; after an underrun, a small lead so the start isn't clipped.
    if (nextTime < c.currentTime) nextTime = c.currentTime + 0.03;
    src.start(nextTime);
    nextTime += audio.duration;
    sources.add(src);
    src.onended = () => {
      sources.delete(src);
      send({ type: 'playback', chunk_id: chunkId, played_ms: Math.round(audio.duration * 1000) });
      refresh();
    };
    parley.samplesPlayed += pcm.length;
    parley.audioChunks++;
    refresh();
  }

  function stopPlayback() {
    for (const src of sources) {
      src.onended = null;
      try { src.stop(); } catch { /* already stopped */ }
    }
    sources.clear();
    nextTime = 0;
  }

  function micChunkRate(c) {
    const factor = Math.ceil(c.sampleRate / MAX_INPUT_RATE);
    return { factor, rate: Math.round(c.sampleRate / factor) };
  }

  // Opened on the first press and kept open, so later presses lose no speech to start-up.
  function ensureMic() {
    if (mic) return Promise.resolve(mic);
    if (!micPromise) {
      micPromise = (async () => {
        const c = audioContext();
        await c.audioWorklet.addModule('mic-worklet.js');
        const stream = await navigator.mediaDevices.getUserMedia({
          audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
        });
        const { factor, rate } = micChunkRate(c);
        const node = new AudioWorkletNode(c, 'mic-capture', { processorOptions: { factor } });
        node.port.onmessage = (e) => {
          if (recording && e.data instanceof ArrayBuffer && ws && ws.readyState === WebSocket.OPEN) ws.send(e.data);
        };
        c.createMediaStreamSource(stream).connect(node);
        // Its output is silent; the connection keeps the node processing in every browser.
        node.connect(c.destination);
        mic = { stream, node, rate };
        return mic;
      })().finally(() => { micPromise = null; });
    }
    return micPromise;
  }

  // ---- protocol -----------------------------------------------------------------------------

  function send(msg) {
    if (!ws || ws.readyState !== WebSocket.OPEN || !isReady) return false;
    ws.send(JSON.stringify(msg));
    return true;
  }

  function wantAudio() { return ui.playAudio.checked && server.tts; }

  function sendStart(rate) {
    ttsRequested = wantAudio();
    startSent = send({ type: 'start', sample_rate: rate, tts: ttsRequested });
    return startSent;
  }

  // A start/stop pair with no audio in between: sets the session's tts flag (the server already
  // prepares its default voice on connect) before a typed turn; it answers with an empty final transcript.
  function primeSession() {
    if (startSent || recording) return;
    if (sendStart(mic ? mic.rate : 16000) && send({ type: 'stop' })) primeStops++;
  }

  function connect() {
    clearTimeout(reconnectTimer);
    const id = localStorage.getItem(SESSION_KEY);
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const url = `${scheme}//${location.host}/ws${id ? `?session_id=${encodeURIComponent(id)}` : ''}`;
    const sock = new WebSocket(url);
    sock.binaryType = 'arraybuffer';
    ws = sock;
    isReady = false;
    refresh();
    sock.onmessage = (e) => { if (sock === ws) onMessage(e.data); };
    sock.onclose = () => { if (sock === ws) onClose(); };
  }

  function onClose() {
    ws = null;
    isReady = false;
    recording = false;
    awaitingFinal = false;
    dropping = false;
    expectAudio = null;
    if (replyActive) {
      replyActive = false;
      for (const r of replies.values()) if (!r.done) finishReply(r, 'connection lost');
    }
    ui.partial.hidden = true;
    const delay = backoffMs;
    backoffMs = Math.min(backoffMs * 2, 10000);
    reconnectTimer = setTimeout(connect, delay);
    refresh();
  }

  function onMessage(data) {
    if (data instanceof ArrayBuffer) return onAudio(data);
    let m;
    try { m = JSON.parse(data); } catch { return; }
    switch (m.type) {
      case 'ready': return onReady(m);
      case 'transcript': return onTranscript(m);
      case 'text_chunk': return onChunk(m);
      case 'response_done': return onDone(m);
      case 'interrupted': return onInterrupted(m);
      case 'error': return onError(m);
    }
  }

  function onReady(m) {
    isReady = true;
    everReady = true;
    backoffMs = 500;
    startSent = false;
    primeStops = 0;
    dropping = false;
    server = {
      llm: m.llm !== false,
      tts: m.tts !== false,
      rate: (m.audio_format && m.audio_format.sample_rate) || 22050,
    };
    parley.sessionId = m.session_id;
    localStorage.setItem(SESSION_KEY, m.session_id);
    setNotice('no-llm', server.llm ? null : noLlmNotice());
    setNotice('no-tts', server.tts ? null : document.createTextNode('Speech output is unavailable on this server: replies are text-only.'));
    if (m.session_id !== shownSession) {
      clearLog();
      shownSession = m.session_id;
      if (m.resumed) loadHistory(m.session_id);
    }
    refresh();
  }

  function onTranscript(m) {
    if (!m.is_final) {
      if (recording || awaitingFinal) showPartial(m.text);
      return;
    }
    // Finals come in the order of the stops, and a priming stop never carries speech.
    if (!m.text && primeStops > 0) {
      primeStops--;
      return;
    }
    awaitingFinal = false;
    ui.partial.hidden = true;
    if (m.text) {
      addUser(m.text);
      replyActive = server.llm;
    } else {
      addSystem('Nothing was heard. Hold the button while you speak.');
    }
    refresh();
  }

  function onChunk(m) {
    if (dropping) return;
    const r = replyFor(m.turn_id);
    parley.chunks++;
    if (m.text) {
      r.text.textContent += (r.text.textContent ? ' ' : '') + m.text;
      r.el.classList.remove('pending');
    }
    if (m.has_audio) {
      expectAudio = { chunkId: m.chunk_id, turnId: m.turn_id };
    } else if (ttsRequested && server.tts && ui.playAudio.checked && /[\p{L}\p{N}]/u.test(m.text || '')) {
      setBadge(r, 'text-only', 'text only', 'This part of the reply came without audio.');
    }
    if (m.is_final) r.el.classList.remove('streaming');
    scrollDown();
    refresh();
  }

  function onAudio(buf) {
    const chunk = expectAudio;
    expectAudio = null;
    if (!chunk || dropping || !ui.playAudio.checked) return;
    playPcm(buf, chunk.chunkId);
  }

  function onDone(m) {
    if (dropping) {
      dropping = false; // the reply ended before our interrupt reached the server
      const r = replies.get(m.turn_id);
      if (r) finishReply(r, 'interrupted');
      refresh();
      return;
    }
    const r = replyFor(m.turn_id);
    if (!r.text.textContent && m.text) r.text.textContent = m.text;
    parley.lastTimings = m.timings || null;
    showLatency(r, m.timings);
    finishReply(r, null);
    replyActive = false;
    refresh();
  }

  function onInterrupted(m) {
    dropping = false;
    replyActive = false;
    const r = replies.get(m.turn_id);
    if (r) finishReply(r, 'interrupted');
    refresh();
  }

  function onError(m) {
    const code = m.code || 'error';
    if (code === 'unknown_session') return; // a new session follows at once; nothing to act on
    if (code.startsWith('tts_')) {
      const last = [...replies.values()].pop();
      if (last && !last.done) setBadge(last, 'text-only', 'text only', m.message);
      setNotice('tts-failed', document.createTextNode('Speech output failed: replies are text-only for now.'));
    }
    if (code === 'no_model' || code === 'not_recording') {
      replyActive = false;
      awaitingFinal = false;
    }
    showError(code, m.message || '');
    refresh();
  }

  async function loadHistory(id) {
    try {
      const res = await fetch(`/sessions/${encodeURIComponent(id)}`);
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const body = await res.json();
      if (shownSession !== id) return;
      // Earlier turns go above anything that arrived while fetching.
      const first = ui.log.firstChild;
      for (const t of body.turns || []) {
        if (t.user) ui.log.insertBefore(userItem(t.user), first);
        if (t.assistant || t.interrupted) {
          const r = replyItem(t.turn_id);
          r.text.textContent = t.assistant || '';
          showLatency(r, t.timings);
          finishReply(r, t.interrupted ? 'interrupted' : null);
          ui.log.insertBefore(r.el, first);
        }
      }
      refresh();
      scrollDown();
    } catch (e) {
      showError('history', `Could not load the earlier turns of this conversation: ${e.message}`);
    }
  }

  // ---- user actions -------------------------------------------------------------------------

  // Any new user input cuts the reply in progress (and its audio).
  function interruptReply() {
    stopPlayback();
    if (replyActive && send({ type: 'interrupt' })) {
      dropping = true;
      expectAudio = null;
    }
    refresh();
  }

  async function pressTalk() {
    if (pressed) return;
    pressed = true;
    interruptReply();
    refresh();
    try {
      await ensureMic();
    } catch (e) {
      pressed = false;
      showError('microphone', `Cannot use the microphone: ${e.message || e.name}`);
      refresh();
      return;
    }
    if (!pressed) return; // released before the microphone was ready
    if (!sendStart(mic.rate)) {
      pressed = false;
      showError('offline', 'Not connected to the server yet.');
      refresh();
      return;
    }
    recording = true;
    showPartial('');
    refresh();
  }

  function releaseTalk() {
    if (!pressed) return;
    pressed = false;
    if (recording) {
      recording = false;
      awaitingFinal = send({ type: 'stop' });
    }
    if (!awaitingFinal) ui.partial.hidden = true;
    refresh();
  }

  function sendText() {
    const text = ui.input.value.trim();
    if (!text) return;
    if (new TextEncoder().encode(text).length > MAX_TEXT_BYTES) {
      showError('text_too_long', `Messages are limited to ${MAX_TEXT_BYTES} bytes.`);
      return;
    }
    if (!isReady) {
      showError('offline', 'Not connected to the server yet.');
      return;
    }
    audioContext(); // a user gesture: let the reply's audio play
    interruptReply();
    primeSession();
    send({ type: 'text', text });
    addUser(text);
    ui.input.value = '';
    replyActive = server.llm;
    refresh();
  }

  function newConversation() {
    interruptReply();
    localStorage.removeItem(SESSION_KEY);
    shownSession = null;
    const old = ws;
    ws = null;
    if (old) old.close();
    replyActive = false;
    clearLog();
    backoffMs = 500;
    connect();
  }

  // ---- rendering ----------------------------------------------------------------------------

  function make(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  function userItem(text) {
    const li = make('li', 'msg user');
    li.append(make('span', 'who', 'You'), make('p', 'text', text));
    return li;
  }

  function replyItem(turnId) {
    const el = make('li', 'msg assistant');
    el.dataset.turn = turnId;
    const text = make('p', 'text');
    const meta = make('div', 'meta');
    el.append(make('span', 'who', 'Parley'), text, meta);
    return { el, text, meta, badges: new Set(), done: false };
  }

  function addUser(text) {
    ui.log.append(userItem(text));
    scrollDown();
  }

  function addSystem(text) {
    ui.log.append(make('li', 'msg system', text));
    scrollDown();
  }

  function replyFor(turnId) {
    let r = replies.get(turnId);
    if (!r) {
      r = replyItem(turnId);
      r.el.classList.add('streaming', 'pending');
      replies.set(turnId, r);
      ui.log.append(r.el);
    }
    return r;
  }

  function finishReply(r, badge) {
    r.done = true;
    r.el.classList.remove('streaming', 'pending');
    if (badge) setBadge(r, badge.replace(/\s+/g, '-'), badge, null);
  }

  function setBadge(r, key, label, title) {
    if (r.badges.has(key)) return;
    r.badges.add(key);
    const b = make('span', `badge ${key}`, label);
    if (title) b.title = title;
    r.meta.prepend(b);
  }

  function fmtMs(v) { return typeof v === 'number' ? `${Math.round(v)} ms` : '—'; }

  function showLatency(r, t) {
    if (!t || typeof t !== 'object') return;
    let lat = r.meta.querySelector('.latency');
    if (!lat) r.meta.append((lat = make('span', 'latency')));
    lat.textContent = `first text ${fmtMs(t.first_text_ms)} · first audio ${fmtMs(t.first_audio_ms)}`;
    lat.title = Object.entries(t).map(([k, v]) => `${k}: ${v}`).join('\n');
    showWaterfall(r, t);
  }

  // The turn's stages after the end of the user's turn, as bars on one time axis.
  const STAGES = [
    ['transcript_ms', 'transcript'],
    ['first_token_ms', 'first token'],
    ['first_text_ms', 'first text'],
    ['first_audio_ms', 'first audio'],
    ['total_ms', 'reply done'],
  ];
  function showWaterfall(r, t) {
    const end = Math.max(1, ...STAGES.map(([k]) => (typeof t[k] === 'number' ? t[k] : 0)));
    let wf = r.el.querySelector('.waterfall');
    if (!wf) r.el.append((wf = make('div', 'waterfall')));
    wf.replaceChildren();
    wf.setAttribute('aria-label', 'latency waterfall');
    for (const [k, label] of STAGES) {
      if (typeof t[k] !== 'number') continue;
      const row = make('div', 'wf-row');
      const bar = make('div', 'wf-bar');
      bar.style.width = `${Math.max(0.5, (100 * t[k]) / end)}%`;
      const track = make('div', 'wf-track');
      track.append(bar);
      row.append(make('span', 'wf-label', label), track, make('span', 'wf-value', fmtMs(t[k])));
      wf.append(row);
    }
  }

  function showPartial(text) {
    ui.partial.hidden = false;
    ui.partial.textContent = text || 'Listening…';
    ui.partial.classList.toggle('placeholder', !text);
  }

  function clearLog() {
    ui.log.replaceChildren();
    replies.clear();
    refresh();
  }

  function scrollDown() {
    scroller.scrollTop = scroller.scrollHeight;
  }

  function noLlmNotice() {
    const f = document.createDocumentFragment();
    f.append('No language model loaded — start the server with ',
      make('code', null, 'make serve MODEL=path/to/model.gguf'),
      '. Speech is still transcribed.');
    return f;
  }

  function setNotice(key, content) {
    const old = ui.notices.querySelector(`[data-key="${key}"]`);
    if (old) old.remove();
    if (!content) return;
    const p = make('p', 'notice');
    p.dataset.key = key;
    p.append(content);
    ui.notices.append(p);
  }

  function showError(code, message) {
    // The same error again replaces the old one (moved last) rather than piling up.
    for (const e of [...ui.errors.children]) if (e.dataset.code === code && e.dataset.message === message) e.remove();
    const item = make('div', 'error');
    item.dataset.code = code;
    item.dataset.message = message;
    const text = make('span', null);
    text.append(make('strong', null, code), ` ${message}`);
    const close = make('button', 'quiet', '×');
    close.type = 'button';
    close.setAttribute('aria-label', 'Dismiss');
    close.onclick = () => item.remove();
    item.append(text, close);
    ui.errors.append(item);
    while (ui.errors.children.length > 3) ui.errors.firstChild.remove();
  }

  const STATUS_TEXT = {
    connecting: 'Connecting…', reconnecting: 'Reconnecting…', ready: 'Ready', recording: 'Listening…',
    thinking: 'Thinking…', speaking: 'Speaking…',
  };

  function refresh() {
    let s;
    if (!isReady) s = everReady ? 'reconnecting' : 'connecting';
    else if (recording || pressed) s = 'recording';
    else if (sources.size) s = 'speaking';
    else if (awaitingFinal || replyActive) s = 'thinking';
    else s = 'ready';
    parley.state = s;
    ui.status.dataset.state = s;
    ui.status.textContent = STATUS_TEXT[s];
    ui.talk.classList.toggle('active', pressed);
    ui.talk.setAttribute('aria-pressed', String(pressed));
    ui.talk.querySelector('.talk-label').textContent = pressed ? 'Release to send' : 'Hold to talk';
    ui.talk.disabled = !isReady && !pressed;
    ui.interrupt.disabled = !(replyActive || sources.size);
    ui.empty.hidden = ui.log.children.length > 0;
  }

  // ---- input wiring -------------------------------------------------------------------------

  ui.talk.addEventListener('pointerdown', (e) => {
    if (e.pointerType === 'mouse' && e.button !== 0) return;
    e.preventDefault();
    ui.talk.setPointerCapture(e.pointerId);
    pressTalk();
  });
  for (const type of ['pointerup', 'pointercancel', 'lostpointercapture']) ui.talk.addEventListener(type, releaseTalk);
  ui.talk.addEventListener('contextmenu', (e) => e.preventDefault()); // long touch

  // Space in a form field keeps its usual meaning (typing, toggling the checkbox).
  const typing = (t) => t instanceof HTMLElement && (t.isContentEditable || t.matches('input, textarea, select'));
  let spaceHeld = false;
  window.addEventListener('keydown', (e) => {
    if (e.code !== 'Space' || typing(e.target)) return;
    e.preventDefault(); // no page scroll, no click on a focused button
    if (e.repeat || spaceHeld) return;
    spaceHeld = true;
    pressTalk();
  });
  window.addEventListener('keyup', (e) => {
    if (e.code !== 'Space' || !spaceHeld) return;
    e.preventDefault();
    spaceHeld = false;
    releaseTalk();
  });
  window.addEventListener('blur', () => {
    spaceHeld = false;
    releaseTalk();
  });

  ui.form.addEventListener('submit', (e) => {
    e.preventDefault();
    sendText();
  });
  ui.interrupt.addEventListener('click', interruptReply);
  ui.newSession.addEventListener('click', newConversation);
  ui.playAudio.addEventListener('change', () => {
    if (!ui.playAudio.checked) stopPlayback();
    startSent = false; // the next start carries the new tts flag
    refresh();
  });
  // Browsers keep an AudioContext suspended until a user gesture, and which events count differs
  // (Chromium ignores a touch's pointerdown, for one): try on each of them.
  for (const type of ['pointerdown', 'pointerup', 'touchend', 'keydown']) {
    window.addEventListener(type, audioContext, { capture: true, passive: true });
  }

  connect();
})();

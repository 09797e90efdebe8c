// Parley's browser client: hands-free conversation (the server's VAD finds each turn in a
// continuous microphone stream), push-to-talk and typed input over the /ws protocol, streamed
// reply text with the spoken word highlighted, and gapless playback of each chunk's PCM audio.
// Plain standard APIs (Chromium, Firefox).
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $('status'), newSession: $('new-session'), notices: $('notices'), errors: $('errors'),
    log: $('log'), empty: $('empty'), partial: $('partial'), talk: $('talk'), hint: $('talk-hint'),
    interrupt: $('interrupt'), playAudio: $('play-audio'), form: $('text-form'),
    input: $('text-input'), modes: document.querySelectorAll('input[name="mode"]'),
  };
  const scroller = document.querySelector('main');

  // Read by the browser tests; samplesPlayed counts samples handed to the audio graph,
  // highlighted is the word being spoken ('' when none).
  const parley = (window.parley = {
    samplesPlayed: 0, chunks: 0, audioChunks: 0, lastTimings: null, state: 'connecting', sessionId: null,
    mode: null, listening: false, speechStarted: 0, speechStopped: 0, finals: 0, replies: 0,
    responses: 0, interruptions: 0, wordChunks: 0, highlights: 0, highlighted: '',
  });

  const SESSION_KEY = 'parley.session_id';
  // A new session's resume token: it reads the session's history (GET /sessions/{id}).
  const TOKEN_KEY = 'parley.resume_token';
  const MODE_KEY = 'parley.mode';
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
  let startMode = 'push_to_talk'; // the mode of the last start
  let primeStops = 0;      // stops sent only to configure the session; their empty finals are ignored
  let ttsRequested = true; // the tts flag of the last start

  // ---- turn state ---------------------------------------------------------------------------

  // 'hands_free' (the default: the server decides where turns end) or 'push_to_talk'.
  let mode = localStorage.getItem(MODE_KEY) === 'push_to_talk' ? 'push_to_talk' : 'hands_free';
  let listening = false;    // hands-free: the user turned listening on (kept across reconnects)
  let userSpeaking = false; // hands-free: between speech_started and speech_stopped
  let pressed = false;      // push-to-talk held (mouse, touch or space)
  let recording = false;    // start sent, stop not yet: microphone frames go to the server
  let awaitingFinal = false;
  let replyActive = false;  // a reply was asked for and has not ended
  let dropping = false;     // after a local interrupt: ignore the old reply until the server confirms
  let expectAudio = null;   // the chunk whose binary audio comes next
  const replies = new Map(); // turn_id -> reply { el, text, meta, badges, done, chunks }
  const cutAt = new Map();   // turn_id -> where its audio was stopped locally, until `interrupted`

  // ---- audio --------------------------------------------------------------------------------

  let ctx = null;
  let mic = null; // { stream, node, rate, echo }
  let micPromise = null;
  let nextTime = 0;
  let scheduled = []; // chunks whose audio is queued or playing, in play order

  function audioContext() {
    if (!ctx) ctx = new AudioContext();
    if (ctx.state === 'suspended') ctx.resume().catch(() => {});
    return ctx;
  }

  // The AudioContext time of the sample now leaving the speakers.
  function audibleTime() {
    return ctx ? ctx.currentTime - (ctx.outputLatency || 0) : 0;
  }

  function playPcm(buf, chunk) {
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
    chunk.start = nextTime;
    chunk.duration = audio.duration;
    chunk.src = src;
    nextTime += audio.duration;
    scheduled.push(chunk);
    src.onended = () => {
      scheduled = scheduled.filter((x) => x !== chunk);
      send({ type: 'playback', turn_id: chunk.turnId, chunk_id: chunk.id, played_ms: Math.round(audio.duration * 1000) });
      refresh();
    };
    parley.samplesPlayed += pcm.length;
    parley.audioChunks++;
    wakeHighlighter();
    refresh();
  }

  // Stops and drops queued audio: all of it, or only that of turns up to `upToTurn`.
  function stopPlayback(upToTurn = Infinity) {
    const keep = [];
    for (const chunk of scheduled) {
      if (chunk.turnId > upToTurn) {
        keep.push(chunk);
        continue;
      }
      chunk.src.onended = null;
      try { chunk.src.stop(); } catch { /* already stopped */ }
    }
    scheduled = keep;
    nextTime = keep.length ? Math.max(...keep.map((x) => x.start + x.duration)) : 0;
    wakeHighlighter();
  }

  // Where the playback of a reply is: the chunk playing now (or the next one queued, or the last
  // one played) and how many ms of it were heard. Null when none of its audio was scheduled.
  function playPosition(r) {
    const t = audibleTime();
    let last = null;
    for (const chunk of r.chunks) {
      if (chunk.start == null) continue;
      if (t < chunk.start) return { chunk, playedMs: 0 };
      const ms = (t - chunk.start) * 1000;
      if (ms < chunk.duration * 1000) return { chunk, playedMs: ms };
      last = chunk;
    }
    return last ? { chunk: last, playedMs: last.duration * 1000 } : null;
  }

  function micChunkRate(c) {
    const factor = Math.ceil(c.sampleRate / MAX_INPUT_RATE);
    return { factor, rate: Math.round(c.sampleRate / factor) };
  }

  // Opened on the first use and kept open, so later turns lose no speech to start-up. The
  // browser's echo cancellation stays on: in hands-free mode the microphone hears the replies.
  function ensureMic() {
    if (mic) return Promise.resolve(mic);
    if (!micPromise) {
      micPromise = (async () => {
        const c = audioContext();
        await c.audioWorklet.addModule('mic-worklet.js');
        const stream = await navigator.mediaDevices.getUserMedia({
          audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
        });
        const track = stream.getAudioTracks()[0];
        const settings = track && track.getSettings ? track.getSettings() : {};
        const { factor, rate } = micChunkRate(c);
        const node = new AudioWorkletNode(c, 'mic-capture', { processorOptions: { factor } });
        node.port.onmessage = (e) => {
          if (recording && e.data instanceof ArrayBuffer && ws && ws.readyState === WebSocket.OPEN) ws.send(e.data);
        };
        c.createMediaStreamSource(stream).connect(node);
        // Its output is silent; the connection keeps the node processing in every browser.
        node.connect(c.destination);
        // Without the browser's echo cancellation the server cancels the echo of its own replies.
        mic = { stream, node, rate, echo: settings.echoCancellation !== false };
        return mic;
      })().finally(() => { micPromise = null; });
    }
    return micPromise;
  }

  // ---- word highlighting ----------------------------------------------------------------------

  let highlightedWord = null; // the token shown as spoken
  let tick = null;            // the next highlightTick: { frame } or { timer }

  function setHighlight(token) {
    if (token === highlightedWord) return;
    if (highlightedWord) highlightedWord.el.classList.remove('now');
    highlightedWord = token;
    parley.highlighted = token ? token.text : '';
    if (!token) return;
    token.el.classList.add('now');
    parley.highlights++;
  }

  // The word under the audio clock, from the timings of the chunk playing now.
  function highlightTick() {
    tick = null;
    if (!scheduled.length) {
      setHighlight(null);
      return;
    }
    const t = audibleTime();
    let token = null;
    for (const chunk of scheduled) {
      if (t < chunk.start || t >= chunk.start + chunk.duration) continue;
      const ms = (t - chunk.start) * 1000;
      token = chunk.tokens.find((w) => w.startMs != null && ms >= w.startMs && ms < w.endMs) || null;
      break;
    }
    setHighlight(token);
    wakeHighlighter();
  }

  // Every frame while the page is visible; a hidden page gets no frames, so a slow timer there.
  function wakeHighlighter() {
    if (tick) return;
    tick = document.hidden ? { timer: setTimeout(highlightTick, 250) } : { frame: requestAnimationFrame(highlightTick) };
  }

  document.addEventListener('visibilitychange', () => {
    if (!tick) return;
    if (tick.frame) cancelAnimationFrame(tick.frame);
    else clearTimeout(tick.timer);
    tick = null;
    wakeHighlighter();
  });

  // ---- protocol -----------------------------------------------------------------------------

  function send(msg) {
    if (!ws || ws.readyState !== WebSocket.OPEN || !isReady) return false;
    ws.send(JSON.stringify(msg));
    return true;
  }

  function wantAudio() { return ui.playAudio.checked && server.tts; }

  function sendStart(rate, how = 'push_to_talk') {
    ttsRequested = wantAudio();
    const msg = { type: 'start', sample_rate: rate, tts: ttsRequested, mode: how };
    if (mic) msg.echo_cancellation = mic.echo;
    startSent = send(msg);
    if (startSent) startMode = how;
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
    userSpeaking = false;
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
      case 'speech_started': return onSpeechStarted(m);
      case 'speech_stopped': return onSpeechStopped(m);
      case 'transcript': return onTranscript(m);
      case 'text_chunk': return onChunk(m);
      case 'response_done': return onDone(m);
      case 'interrupted': return onInterrupted(m);
      case 'resumed': return onResumed(m);
      case 'error': return onError(m);
      // Every place with the language model is taken: the server says where this page is in line.
      case 'queued': return setNotice('queued', document.createTextNode(`The server is busy: you are number ${m.position} in line for a reply; you can talk once it is your turn.`));
      case 'admitted': return setNotice('queued', null);
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
    if (m.resume_token) localStorage.setItem(TOKEN_KEY, m.resume_token);
    else if (!m.resumed) localStorage.removeItem(TOKEN_KEY);
    setNotice('no-llm', server.llm ? null : noLlmNotice());
    setNotice('no-tts', server.tts ? null : document.createTextNode('Speech output is unavailable on this server: replies are text-only.'));
    if (m.session_id !== shownSession) {
      clearLog();
      shownSession = m.session_id;
      if (m.resumed) loadHistory(m.session_id);
    }
    // Back after a reconnect: listening goes on where the user left it.
    if (listening && mic && !recording) sendListenStart();
    refresh();
  }

  function onSpeechStarted() {
    parley.speechStarted++;
    if (!recording || startMode !== 'hands_free') return;
    userSpeaking = true;
    showPartial('');
    refresh();
  }

  function onSpeechStopped() {
    parley.speechStopped++;
    if (!userSpeaking) return;
    userSpeaking = false;
    awaitingFinal = true; // the final transcript follows
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
      parley.finals++;
      addUser(m.text);
      replyActive = server.llm;
    } else if (startMode !== 'hands_free') {
      // Hands-free, a noise the recogniser found no words in is no turn: nothing to say.
      addSystem('Nothing was heard. Hold the button while you speak.');
    }
    refresh();
  }

  function onChunk(m) {
    if (dropping) return;
    const r = replyFor(m.turn_id);
    parley.chunks++;
    if (!r.chunks.length) parley.replies++;
    const chunk = chunkItem(m);
    r.chunks.push(chunk);
    if (m.text) {
      if (r.text.childNodes.length) r.text.append(' ');
      r.text.append(chunk.el);
      r.el.classList.remove('pending');
    }
    if (chunk.tokens.some((w) => w.startMs != null)) parley.wordChunks++;
    if (m.has_audio) {
      expectAudio = chunk;
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
    playPcm(buf, chunk);
  }

  function onDone(m) {
    if (dropping) {
      dropping = false; // the reply ended before our interrupt reached the server
      const r = replies.get(m.turn_id);
      if (r) finishReply(r, 'interrupted');
      refresh();
      return;
    }
    parley.responses++;
    const r = replyFor(m.turn_id);
    if (!r.text.textContent && m.text) r.text.textContent = m.text;
    parley.lastTimings = m.timings || null;
    showLatency(r, m.timings);
    finishReply(r, null);
    replyActive = false;
    refresh();
  }

  // The reply was cut (barge-in, a new turn, or our interrupt): its audio stops now, and the
  // server learns exactly how much was played, so the history keeps the words that were heard.
  function onInterrupted(m) {
    dropping = false;
    replyActive = false;
    parley.interruptions++;
    const r = replies.get(m.turn_id);
    let pos = cutAt.get(m.turn_id) || null;
    cutAt.delete(m.turn_id);
    if (r && (!pos || scheduled.some((x) => x.turnId === m.turn_id))) pos = playPosition(r) || pos;
    stopPlayback(m.turn_id);
    if (pos) send({ type: 'playback', turn_id: m.turn_id, chunk_id: pos.chunk.id, played_ms: Math.round(pos.playedMs) });
    if (r) {
      showCut(r, pos, m.heard || '');
      finishReply(r, 'interrupted');
    }
    refresh();
  }

  // A false start (a sound, or speech with no words) cut the reply: it goes on. The server
  // sends its unheard rest again, so the struck-through copy goes.
  function onResumed(m) {
    const r = replies.get(m.turn_id);
    parley.resumes = (parley.resumes || 0) + 1;
    if (!r) return;
    r.text.querySelectorAll('.unheard, .visually-hidden').forEach((e) => e.remove());
    r.chunks = r.chunks.filter((c) => !c.el.classList.contains('unheard'));
    r.el.classList.remove('cut');
    r.badges.delete('interrupted');
    const badge = r.meta.querySelector('.badge.interrupted');
    if (badge) badge.remove();
    r.done = false;
    r.el.classList.add('streaming');
    replyActive = true;
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
      const token = localStorage.getItem(TOKEN_KEY);
      const res = await fetch(`/sessions/${encodeURIComponent(id)}`, {
        headers: token ? { Authorization: `Bearer ${token}` } : {},
      });
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

  // Any new user input cuts the reply in progress (and its audio). Where each playing reply
  // stopped is kept for the playback report that answers the server's `interrupted`.
  function interruptReply() {
    const playing = scheduled.length > 0;
    for (const turnId of new Set(scheduled.map((x) => x.turnId))) {
      const r = replies.get(turnId);
      const pos = r && playPosition(r);
      if (pos) cutAt.set(turnId, pos);
    }
    stopPlayback();
    if ((replyActive || playing) && send({ type: 'interrupt' }) && replyActive) {
      dropping = true;
      expectAudio = null;
    }
    refresh();
  }

  async function pressTalk() {
    if (pressed || mode !== 'push_to_talk') return;
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

  // Hands-free: one click turns the microphone on (browsers want a gesture for it); from then on
  // it streams, and the server finds each turn and each barge-in.
  async function startListening() {
    if (listening) return;
    listening = true;
    parley.listening = true;
    refresh();
    try {
      await ensureMic();
    } catch (e) {
      listening = false;
      parley.listening = false;
      showError('microphone', `Cannot use the microphone: ${e.message || e.name}`);
      refresh();
      return;
    }
    if (!listening || recording) return; // turned off meanwhile, or started by a reconnect
    if (!sendListenStart()) showError('offline', 'Not connected to the server yet; listening starts once it is.');
    refresh();
  }

  function sendListenStart() {
    if (!mic || !sendStart(mic.rate, 'hands_free')) return false;
    recording = true;
    return true;
  }

  function stopListening() {
    if (!listening) return;
    listening = false;
    parley.listening = false;
    if (recording) {
      recording = false;
      send({ type: 'stop' }); // an utterance in progress ends here and is answered
      if (userSpeaking) awaitingFinal = true;
    }
    userSpeaking = false;
    if (!awaitingFinal) ui.partial.hidden = true;
    refresh();
  }

  function setMode(next) {
    if (next === mode) return;
    stopListening();
    releaseTalk();
    mode = next;
    localStorage.setItem(MODE_KEY, mode);
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
    localStorage.removeItem(TOKEN_KEY);
    shownSession = null;
    const old = ws;
    ws = null;
    if (old) old.close();
    isReady = false;
    recording = false; // listening, if on, restarts with the new session's ready
    userSpeaking = false;
    awaitingFinal = false;
    dropping = false;
    expectAudio = null;
    ui.partial.hidden = true;
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
    return { el, text, meta, badges: new Set(), done: false, chunks: [] };
  }

  // One text_chunk as shown: a span per word, each carrying its timing within the chunk's audio
  // when the chunk has word timings (`words` name pieces of the text, in order).
  function chunkItem(m) {
    const text = m.text || '';
    const el = make('span', 'chunk');
    const tokens = [];
    let at = 0;
    for (const w of text.matchAll(/\S+/g)) {
      if (w.index > at) el.append(text.slice(at, w.index));
      const span = make('span', 'w', w[0]);
      el.append(span);
      at = w.index + w[0].length;
      tokens.push({ el: span, text: w[0], begin: w.index, end: at, startMs: null, endMs: null });
    }
    if (at < text.length) el.append(text.slice(at));
    let from = 0;
    let k = 0;
    for (const w of (m.has_audio && Array.isArray(m.words)) ? m.words : []) {
      const word = typeof w?.text === 'string' ? w.text.trim() : '';
      if (!word || typeof w.start_ms !== 'number' || typeof w.end_ms !== 'number') continue;
      const i = text.indexOf(word, from);
      if (i < 0) continue;
      from = i + word.length;
      while (k < tokens.length && tokens[k].end <= i) k++;
      if (k === tokens.length) break;
      const token = tokens[k];
      // Several timed words in one token (e.g. "3.14" spoken as three) make one span of time.
      if (token.startMs == null) token.startMs = w.start_ms;
      token.endMs = Math.max(token.endMs ?? 0, w.end_ms);
    }
    return { id: m.chunk_id, turnId: m.turn_id, text, el, tokens, start: null, duration: 0, src: null };
  }

  // Marks what was not heard of a cut reply: struck through after the point where playback
  // stopped (from our own position when audio played, else from the server's `heard` words).
  function showCut(r, pos, heard) {
    const tokens = r.chunks.flatMap((c) => c.tokens);
    let cut; // index into tokens of the first word not heard
    if (pos) {
      const k = r.chunks.indexOf(pos.chunk);
      cut = r.chunks.slice(0, k).reduce((n, c) => n + c.tokens.length, 0);
      const c = pos.chunk;
      const ms = pos.playedMs;
      let i = c.tokens.length;
      if (ms < c.duration * 1000) {
        // A word whose middle was played was heard, as the server counts it.
        if (c.tokens.some((w) => w.startMs != null)) {
          i = c.tokens.findIndex((w) => w.startMs != null && (w.startMs + w.endMs) / 2 > ms);
          if (i < 0) i = c.tokens.length;
        } else {
          const played = Math.floor((c.text.length * ms) / (c.duration * 1000));
          i = c.tokens.findIndex((w) => w.end > played);
          if (i < 0) i = c.tokens.length;
        }
      }
      cut += i;
    } else {
      cut = Math.min(tokens.length, (heard.match(/\S+/g) || []).length);
    }
    if (cut >= tokens.length) return;
    r.el.classList.add('cut');
    for (const w of tokens.slice(cut)) w.el.classList.add('unheard');
    for (const c of r.chunks) if (c.tokens.length && c.tokens[0].el.classList.contains('unheard')) c.el.classList.add('unheard');
    tokens[cut].el.before(make('span', 'visually-hidden', '(not heard:) '));
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
    if (badge) setBadge(r, badge.replace(/\s+/g, '-'), badge, badge === 'interrupted' ? 'Struck-through words were not heard.' : null);
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
    // What the user waited leads: the end of their speech to the first sound of the reply; the
    // engine stages (after the end of the turn) follow in the waterfall and the tooltip.
    const wait = typeof t.speech_end_to_audio_ms === 'number' ? t.speech_end_to_audio_ms : t.first_audio_ms;
    lat.textContent = typeof wait === 'number'
      ? `reply heard ${fmtMs(wait)} after you stopped · first text ${fmtMs(t.first_text_ms)} after the end of the turn`
      : `first text ${fmtMs(t.first_text_ms)} (no audio)`;
    lat.title = Object.entries(t).map(([k, v]) => `${k}: ${v}`).join('\n');
    showWaterfall(r, t);
  }

  // The turn's stages on one time axis whose zero is the end of the user's turn (hands-free,
  // speech ends before it, and a speculative reply may start before it: those bars go left).
  const STAGES = [
    ['speech_end_ms', 'speech end'],
    ['transcript_ms', 'transcript'],
    ['first_token_ms', 'first token'],
    ['first_text_ms', 'first text'],
    ['first_audio_ms', 'first audio'],
    ['total_ms', 'reply done'],
  ];
  function showWaterfall(r, t) {
    const values = STAGES.map(([k]) => t[k]).filter((v) => typeof v === 'number');
    const lo = Math.min(0, ...values);
    const span = Math.max(1, ...values) - lo;
    const at = (v) => (100 * (v - lo)) / span;
    let wf = r.el.querySelector('.waterfall');
    if (!wf) r.el.append((wf = make('div', 'waterfall')));
    wf.replaceChildren();
    wf.setAttribute('aria-label', 'latency waterfall');
    for (const [k, label] of STAGES) {
      if (typeof t[k] !== 'number') continue;
      const row = make('div', 'wf-row');
      const bar = make('div', 'wf-bar');
      bar.style.marginLeft = `${Math.min(at(0), at(t[k]))}%`;
      bar.style.width = `${Math.max(0.5, Math.abs(at(t[k]) - at(0)))}%`;
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
    cutAt.clear();
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
    connecting: 'Connecting…', reconnecting: 'Reconnecting…', ready: 'Ready', recording: 'Recording…',
    listening: 'Listening', hearing: 'Hearing you…', thinking: 'Thinking…', speaking: 'Speaking…',
  };

  const HINT = {
    hands_free: 'Click once to turn the microphone on, then just talk: Parley answers when you pause, and stops when you talk over it.',
    push_to_talk: 'Hold the button or the space bar while you speak; release to send.',
  };
  const EMPTY = {
    hands_free: 'Start listening and speak, or type below.',
    push_to_talk: 'Hold the button (or the space bar) and speak, or type below.',
  };

  // Live regions announce every write: write only changes.
  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  function refresh() {
    const handsFree = mode === 'hands_free';
    let s;
    if (!isReady) s = everReady ? 'reconnecting' : 'connecting';
    else if (pressed || (recording && startMode === 'push_to_talk')) s = 'recording';
    else if (userSpeaking) s = 'hearing';
    else if (scheduled.length) s = 'speaking';
    else if (awaitingFinal || replyActive) s = 'thinking';
    else if (listening) s = 'listening';
    else s = 'ready';
    parley.state = s;
    parley.mode = mode;
    ui.status.dataset.state = s;
    setText(ui.status, STATUS_TEXT[s]);
    for (const r of ui.modes) r.checked = r.value === mode;
    ui.talk.classList.toggle('active', handsFree ? listening : pressed);
    ui.talk.classList.toggle('hearing', handsFree && userSpeaking);
    ui.talk.dataset.mode = mode;
    const label = ui.talk.querySelector('.talk-label');
    if (handsFree) {
      ui.talk.removeAttribute('aria-pressed');
      setText(label, listening ? 'Stop listening' : 'Start listening');
      ui.talk.disabled = !isReady && !listening;
    } else {
      ui.talk.setAttribute('aria-pressed', String(pressed));
      setText(label, pressed ? 'Release to send' : 'Hold to talk');
      ui.talk.disabled = !isReady && !pressed;
    }
    setText(ui.hint, HINT[mode]);
    setText(ui.empty, EMPTY[mode]);
    ui.interrupt.disabled = !(replyActive || scheduled.length);
    ui.empty.hidden = ui.log.children.length > 0;
  }

  // ---- input wiring -------------------------------------------------------------------------

  ui.talk.addEventListener('pointerdown', (e) => {
    if (mode !== 'push_to_talk') return; // hands-free: a plain click toggles listening
    if (e.pointerType === 'mouse' && e.button !== 0) return;
    e.preventDefault();
    ui.talk.setPointerCapture(e.pointerId);
    pressTalk();
  });
  for (const type of ['pointerup', 'pointercancel', 'lostpointercapture']) ui.talk.addEventListener(type, releaseTalk);
  ui.talk.addEventListener('click', () => {
    if (mode !== 'hands_free') return;
    if (listening) stopListening();
    else startListening();
  });
  ui.talk.addEventListener('contextmenu', (e) => e.preventDefault()); // long touch

  // Space in a form field keeps its usual meaning (typing, toggling the checkbox); hands-free,
  // it is the focused button's own (a click).
  const typing = (t) => t instanceof HTMLElement && (t.isContentEditable || t.matches('input, textarea, select'));
  let spaceHeld = false;
  window.addEventListener('keydown', (e) => {
    if (e.code !== 'Space' || typing(e.target) || mode !== 'push_to_talk') return;
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

  for (const r of ui.modes) r.addEventListener('change', () => { if (r.checked) setMode(r.value); });
  ui.form.addEventListener('submit', (e) => {
    e.preventDefault();
    sendText();
  });
  ui.interrupt.addEventListener('click', interruptReply);
  ui.newSession.addEventListener('click', newConversation);
  ui.playAudio.addEventListener('change', () => {
    if (!ui.playAudio.checked) stopPlayback();
    startSent = false; // the next start carries the new tts flag
    if (listening && recording) sendListenStart(); // restarts listening with it now
    refresh();
  });
  // Browsers keep an AudioContext suspended until a user gesture, and which events count differs
  // (Chromium ignores a touch's pointerdown, for one): try on each of them.
  for (const type of ['pointerdown', 'pointerup', 'touchend', 'keydown']) {
    window.addEventListener(type, audioContext, { capture: true, passive: true });
  }

  connect();
})();

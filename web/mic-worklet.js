// Microphone capture: turns the audio graph's Float32 blocks into 16-bit PCM frames of about
// 20 ms and posts them to the main thread (which sends them over the WebSocket).
//
// The server accepts 8..48 kHz input, so a context running faster (88.2/96/192 kHz hardware)
// is decimated by the integer factor app.js passes, averaging each group as a crude low-pass.

class MicCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.factor = Math.max(1, (options.processorOptions && options.processorOptions.factor) || 1);
    this.rate = Math.round(sampleRate / this.factor);
    this.frameLen = Math.round(this.rate / 50); // 20 ms
    this.frame = new Int16Array(this.frameLen);
    this.fill = 0;
    this.acc = 0; // running sum of the current decimation group
    this.accN = 0;
  }

  process(inputs) {
    const input = inputs[0];
    // No input connected yet (or the track ended): keep the processor alive, post nothing.
    if (!input || input.length === 0) return true;
    const ch = input[0];
    for (let i = 0; i < ch.length; i++) {
      this.acc += ch[i];
      if (++this.accN < this.factor) continue;
      let s = this.acc / this.accN;
      this.acc = 0;
      this.accN = 0;
      s = s < -1 ? -1 : s > 1 ? 1 : s;
      this.frame[this.fill++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      if (this.fill === this.frameLen) {
        // Transfer the buffer rather than copy it; start a fresh one.
        this.port.postMessage(this.frame.buffer, [this.frame.buffer]);
        this.frame = new Int16Array(this.frameLen);
        this.fill = 0;
      }
    }
    return true;
  }
}

registerProcessor('mic-capture', MicCapture);

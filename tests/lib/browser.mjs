// Debian's Chromium for the browser tests, headless, never downloaded: playwright-core drives
// the system binary ($PARLEY_CHROMIUM, else /usr/bin/chromium) with a fake microphone that
// plays a WAV file (Chromium resamples it itself and loops it).
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.PARLEY_CHROMIUM || '/usr/bin/chromium';

export function launchChromium(micWav) {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      `--use-file-for-fake-audio-capture=${micWav}`, '--autoplay-policy=no-user-gesture-required',
    ],
  });
}

/**
 * A sleep that another event can cut short: wait(ms) resolves after `ms` (or never times out without it) or at the
 * next wake(), whichever comes first. Stream readers use it to wait for bytes with a deadline.
 */
export class Wakeup {
  #waiters: (() => void)[] = [];

  wait(ms?: number): Promise<void> {
    return new Promise((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      if (ms !== undefined) {
        timer = setTimeout(() => {
          this.#waiters = this.#waiters.filter((w) => w !== done);
          resolve();
        }, ms);
      }
      this.#waiters.push(done);
    });
  }

  /** Resolves every wait() in progress. */
  wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }
}

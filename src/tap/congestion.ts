/**
 * The owner's side of a passt backend's congestion (src/passt.ts): what the
 * flows do while frames for the guest cannot be placed, and when that ends.
 *
 * A backend (tap/stream.ts, tap/vhost-user.ts) sets `congested` when it
 * refuses room for frames (its queue is full, or the guest has no receive
 * buffers) and clears it once they can flow again, counting each end in
 * `congestionEnds`. After every flush of the backend, check() pauses the UDP
 * sockets while it is congested (their datagrams would be dropped) and
 * resumes them after; and whenever it is not congested after having been
 * (the flag seen clear after set, or the count moved), TCP flows get to
 * send what their sockets hold. The count matters for the TCP part: a congestion can begin and end between two checks (a flow found no
 * receive buffers, then the guest's kick brought new ones within the same
 * turn of the loop), and a flow that stopped for it has nothing else to wake
 * it when all it sent is acknowledged and its socket reports no new data
 * (edge-triggered).
 */
export interface Congestible {
  readonly congested: boolean;
  /** Ends of congestion so far. */
  readonly congestionEnds: number;
  flush(): void;
}

export class CongestionWatch {
  private paused = false;
  private ends = 0;

  /** pause(true / false): stop or restart receiving UDP for the guest; resume(): let every TCP flow send again. */
  constructor(
    private readonly backend: Congestible,
    private readonly pause: (paused: boolean) => void,
    private readonly resume: () => void,
  ) {}

  /** After each flush of the backend. */
  check(): void {
    const b = this.backend;
    let resume = false;
    if (b.congested !== this.paused) {
      this.paused = b.congested;
      this.pause(this.paused);
      resume = !this.paused;
    }
    if (b.congestionEnds !== this.ends) {
      this.ends = b.congestionEnds;
      if (!b.congested) resume = true;
    }
    if (resume) {
      this.resume();
      b.flush();
    }
  }
}

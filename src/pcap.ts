/**
 * Packet capture of the tap side (--pcap FILE), in the classic libpcap
 * format every tool reads: a 24-byte file header (magic 0xa1b2c3d4, written
 * little-endian, version 2.4, snap length 65535, link type 1 = Ethernet), then
 * per frame a 16-byte record header (seconds, microseconds, captured length,
 * original length) and the captured bytes.
 *
 * Records are gathered in one preallocated buffer and written with
 * fs.writeSync when it fills, when flush() is called (the loop does so once
 * per wake-up, so a live `tail -f | tcpdump -r -` sees frames promptly) and
 * on close(). Frames longer than the snap length (GSO frames of up to 64 KiB
 * plus headers) are cut to it; the record keeps their original length.
 */
import { closeSync, openSync, writeSync } from "node:fs";
import { copyBytes } from "./wire/bytes.ts";

const PCAP_MAGIC = 0xa1b2c3d4;
const PCAP_VERSION_MAJOR = 2;
const PCAP_VERSION_MINOR = 4;
/** Largest captured length per record; also what readers size their buffers by. */
export const PCAP_SNAPLEN = 65535;
const LINKTYPE_ETHERNET = 1;
const PCAP_FILE_HDR = 24;
/** File header fields. */
const HDR_MAGIC = 0;
const HDR_MAJOR = 4;
const HDR_MINOR = 6;
const HDR_THISZONE = 8;
const HDR_SIGFIGS = 12;
const HDR_SNAPLEN = 16;
const HDR_LINKTYPE = 20;
const PCAP_REC_HDR = 16;
/** Record header fields. */
const REC_SEC = 0;
const REC_USEC = 4;
const REC_CAPLEN = 8;
const REC_ORIGLEN = 12;
/** Buffered bytes before a write: room for several full-size records. */
const PCAP_BUF_SIZE = 1 << 20;
/** Capture file mode: captures hold traffic, keep them private. */
const PCAP_FILE_MODE = 0o600;
const US_PER_MS = 1000;
const US_PER_S = 1_000_000;

export class PcapWriter {
  private fd: number;
  private readonly buf = new Uint8Array(PCAP_BUF_SIZE);
  private readonly view = new DataView(this.buf.buffer);
  private pos = 0;

  /** Create (or truncate) the capture file at path and write its header; throws when it cannot be opened. */
  constructor(path: string) {
    this.fd = openSync(path, "w", PCAP_FILE_MODE);
    this.writeFileHeader();
  }

  /** Put the file header into the buffer. */
  private writeFileHeader(): void {
    const v = this.view;
    v.setUint32(HDR_MAGIC, PCAP_MAGIC, true);
    v.setUint16(HDR_MAJOR, PCAP_VERSION_MAJOR, true);
    v.setUint16(HDR_MINOR, PCAP_VERSION_MINOR, true);
    v.setInt32(HDR_THISZONE, 0, true);
    v.setUint32(HDR_SIGFIGS, 0, true);
    v.setUint32(HDR_SNAPLEN, PCAP_SNAPLEN, true);
    v.setUint32(HDR_LINKTYPE, LINKTYPE_ETHERNET, true);
    this.pos = PCAP_FILE_HDR;
  }

  /**
   * Append a record for the len-byte frame at b[off], stamped with the
   * current time in microseconds and cut to PCAP_SNAPLEN. Does nothing after
   * close().
   */
  write(b: Uint8Array, off: number, len: number): void {
    if (this.fd < 0) return;
    const cap = Math.min(len, PCAP_SNAPLEN);
    if (this.pos + PCAP_REC_HDR + cap > PCAP_BUF_SIZE) this.flush();
    const us = Math.floor((performance.timeOrigin + performance.now()) * US_PER_MS);
    const v = this.view;
    v.setUint32(this.pos + REC_SEC, Math.floor(us / US_PER_S), true);
    v.setUint32(this.pos + REC_USEC, us % US_PER_S, true);
    v.setUint32(this.pos + REC_CAPLEN, cap, true);
    v.setUint32(this.pos + REC_ORIGLEN, len, true);
    copyBytes(this.buf, this.pos + PCAP_REC_HDR, b, off, cap);
    this.pos += PCAP_REC_HDR + cap;
  }

  /** Write out everything buffered (retrying partial writes). */
  flush(): void {
    let done = 0;
    while (this.fd >= 0 && done < this.pos) done += writeSync(this.fd, this.buf, done, this.pos - done);
    this.pos = 0;
  }

  /** Flush and close the file; later writes are ignored. */
  close(): void {
    if (this.fd < 0) return;
    this.flush();
    closeSync(this.fd);
    this.fd = -1;
  }
}

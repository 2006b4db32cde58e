/**
 * Which devices' stored rows changed lately (enrolment, removal, a new desired document), for
 * readers that keep a view of the fleet in memory (the dashboard observer) and would otherwise
 * re-read every device to notice a change no device message announces. A ring of ids with a
 * version: a reader keeps the version it has seen and asks for what came after it.
 */
export class DeviceJournal {
  private readonly ids: string[];
  private next = 0;

  constructor(private readonly capacity = 16_384) {
    this.ids = new Array<string>(capacity);
  }

  /** How many changes were recorded since the store opened. */
  get version(): number {
    return this.next;
  }

  record(device: string): void {
    this.ids[this.next % this.capacity] = device;
    this.next++;
  }

  /**
   * The devices changed after `version` (each once), or null when more changed than the ring
   * holds (or `version` is not one this journal gave): the reader must re-read everything.
   */
  since(version: number): string[] | null {
    if (!Number.isInteger(version) || version < 0 || version > this.next || this.next - version > this.capacity) {
      return null;
    }
    const out = new Set<string>();
    for (let v = version; v < this.next; v++) out.add(this.ids[v % this.capacity]!);
    return [...out];
  }
}

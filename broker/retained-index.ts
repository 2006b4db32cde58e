/**
 * Retained messages indexed by topic, for the embedded broker's persistence.
 *
 * Why: aedes-persistence's in-memory store tests every retained message against each new
 * subscription, so N devices each subscribing to their own retained `desired` topic cost O(N²)
 * (DESIGN.md "Topics": 5,000 devices reconnecting took 45.7 s on aedes vs 3.0 s on mosquitto).
 * Here a filter without wildcards is one Map lookup, and a wildcard filter walks a trie keyed by
 * topic level, visiting only the branches the filter can match.
 *
 * Matching follows MQTT 3.1.1 section 4.7:
 * - `+` matches exactly one level, an empty one included (4.7.1.3; aedes runs mqemitter with
 *   matchEmptyLevels for the same reason);
 * - `#` matches the parent level and any number of child levels, and must be last (4.7.1.2);
 * - filters starting with a wildcard do not match topics starting with `$` (4.7.2, [MQTT-4.7.2-1]).
 */

interface TrieNode<T> {
  /** Child nodes by topic level; null until the first child, to keep leaves small. */
  children: Map<string, TrieNode<T>> | null;
  /** The retained value whose topic ends at this node. */
  value: T | undefined;
}

/** Work done by lookups, so tests (and the benchmark) can check that the index does not regress to a scan. */
export interface RetainedIndexWork {
  /** Map probes made by lookups of filters without wildcards. */
  exactProbes: number;
  /** Trie nodes visited by wildcard lookups. */
  nodesVisited: number;
}

const SEPARATOR = '/';

function newNode<T>(): TrieNode<T> {
  return { children: null, value: undefined };
}

/** True when a filter has a `+` or `#` level (a level that merely contains those characters is literal). */
export function hasWildcard(filter: string): boolean {
  if (!filter.includes('+') && !filter.includes('#')) return false;
  return filter.split(SEPARATOR).some((level) => level === '+' || level === '#');
}

export class RetainedIndex<T> {
  /** Topic name -> its trie node (whose value is set): a replaced topic needs no trie walk. */
  readonly #byTopic = new Map<string, TrieNode<T>>();
  readonly #root: TrieNode<T> = newNode();
  readonly work: RetainedIndexWork = { exactProbes: 0, nodesVisited: 0 };

  get size(): number {
    return this.#byTopic.size;
  }

  get(topic: string): T | undefined {
    return this.#byTopic.get(topic)?.value;
  }

  /** Stores (or replaces) the value of a topic name. */
  set(topic: string, value: T): void {
    // A device stores the same four retained topics on every connect: replace in place.
    const known = this.#byTopic.get(topic);
    if (known !== undefined) {
      known.value = value;
      return;
    }
    let node = this.#root;
    for (const level of topic.split(SEPARATOR)) {
      if (node.children === null) node.children = new Map();
      let child = node.children.get(level);
      if (child === undefined) {
        child = newNode();
        node.children.set(level, child);
      }
      node = child;
    }
    node.value = value;
    this.#byTopic.set(topic, node);
  }

  /** Removes a topic; prunes the trie branches left empty so deleted devices leave no residue. */
  delete(topic: string): boolean {
    if (!this.#byTopic.delete(topic)) return false;
    const levels = topic.split(SEPARATOR);
    const path: TrieNode<T>[] = [this.#root];
    let node = this.#root;
    for (const level of levels) {
      const child = node.children?.get(level);
      if (child === undefined) return true; // cannot happen: the map and the trie are updated together
      path.push(child);
      node = child;
    }
    node.value = undefined;
    for (let i = levels.length; i > 0; i--) {
      const current = path[i]!;
      if (current.value !== undefined || (current.children !== null && current.children.size > 0)) break;
      const parent = path[i - 1]!;
      parent.children!.delete(levels[i - 1]!);
      if (parent.children!.size === 0) parent.children = null;
    }
    return true;
  }

  clear(): void {
    this.#byTopic.clear();
    this.#root.children = null;
    this.#root.value = undefined;
  }

  /**
   * Values whose topic matches `filter`. A filter without wildcards costs one Map probe; a wildcard
   * filter visits only matching branches. A filter with `#` anywhere but last matches nothing
   * (MQTT 3.1.1 section 4.7.1.2 makes it invalid; aedes refuses it before it gets here).
   */
  match(filter: string): T[] {
    if (!hasWildcard(filter)) {
      this.work.exactProbes++;
      const value = this.#byTopic.get(filter)?.value;
      return value === undefined ? [] : [value];
    }
    const levels = filter.split(SEPARATOR);
    const hash = levels.indexOf('#');
    if (hash !== -1 && hash !== levels.length - 1) return [];
    const out: T[] = [];
    this.#walk(this.#root, levels, 0, out);
    return out;
  }

  #walk(node: TrieNode<T>, levels: readonly string[], depth: number, out: T[]): void {
    this.work.nodesVisited++;
    if (depth === levels.length) {
      if (node.value !== undefined) out.push(node.value);
      return;
    }
    const level = levels[depth]!;
    // [MQTT-4.7.2-1]: a filter starting with a wildcard does not match topics starting with `$`.
    const skipDollar = depth === 0;
    if (level === '#') {
      // `#` also matches the parent level: `a/#` matches `a` (section 4.7.1.2). At the root there
      // is no parent topic, so nothing to add.
      if (depth > 0 && node.value !== undefined) out.push(node.value);
      if (node.children === null) return;
      for (const [key, child] of node.children) {
        if (skipDollar && key.startsWith('$')) continue;
        this.#collect(child, out);
      }
      return;
    }
    if (node.children === null) return;
    if (level === '+') {
      for (const [key, child] of node.children) {
        if (skipDollar && key.startsWith('$')) continue;
        this.#walk(child, levels, depth + 1, out);
      }
      return;
    }
    const child = node.children.get(level);
    if (child !== undefined) this.#walk(child, levels, depth + 1, out);
  }

  /** Every value in a subtree (the `#` case). */
  #collect(node: TrieNode<T>, out: T[]): void {
    this.work.nodesVisited++;
    if (node.value !== undefined) out.push(node.value);
    if (node.children === null) return;
    for (const child of node.children.values()) this.#collect(child, out);
  }
}

/** Byte counts written for people; media messages (upload limits, clip sizes) and the bots' texts share it. */

/** A size for people: `812 KB`, `9.5 MB` (binary units, as the platforms count their limits). */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
  const mb = bytes / (1024 * 1024);
  if (mb < 1024) return `${mb < 10 ? Math.round(mb * 10) / 10 : Math.round(mb)} MB`;
  return `${Math.round((mb / 1024) * 10) / 10} GB`;
}

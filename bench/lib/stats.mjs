/**
 * Numbers from samples: sorted copies, percentiles by nearest rank, rounding that leaves NaN and
 * infinities alone.
 */

/** Sorted copy of a sample. @param {Float64Array} values */
export function sorted(values) {
  return Float64Array.from(values).sort();
}

/** @param {Float64Array} sortedValues @param {number} p in [0, 100] */
export function percentile(sortedValues, p) {
  if (sortedValues.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sortedValues.length);
  return sortedValues[Math.min(sortedValues.length - 1, Math.max(0, rank - 1))] ?? Number.NaN;
}

/** @param {number} x @param {number} [digits] */
export function round(x, digits = 0) {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/**
 * The regions both pages offer for reading national numbers (phone rules and formatting follow the
 * region). One list, so the pages cannot drift apart; the server accepts any region phonenumbers knows.
 */

const REGIONS = [
  ["US", "United States / Canada (+1)"],
  ["GB", "United Kingdom (+44)"],
  ["IE", "Ireland (+353)"],
  ["DE", "Germany (+49)"],
  ["FR", "France (+33)"],
  ["ES", "Spain (+34)"],
  ["IT", "Italy (+39)"],
  ["NL", "Netherlands (+31)"],
  ["IN", "India (+91)"],
  ["AU", "Australia (+61)"],
  ["BR", "Brazil (+55)"],
  ["MX", "Mexico (+52)"],
  ["JP", "Japan (+81)"],
];

/** Fill a <select> with the regions; `?region=XX` in the page address picks the first choice. */
export function fillRegions(select, fallback = "US") {
  const wanted = new URLSearchParams(location.search).get("region")?.toUpperCase();
  const selected = REGIONS.some(([code]) => code === wanted) ? wanted : fallback;
  select.replaceChildren(
    ...REGIONS.map(([code, label]) => new Option(label, code, code === selected, code === selected)),
  );
}

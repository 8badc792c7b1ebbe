/** US cents as dollars, for display only (money stays integer cents everywhere else). */
export function dollars(cents: number): string {
  return `$${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, "0")}`;
}

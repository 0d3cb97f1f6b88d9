// The limits of one order, and the money bounds that follow from them. Amounts are integer minor
// units held in JavaScript numbers, which are exact only up to 2^53 - 1 (Number.MAX_SAFE_INTEGER,
// about 9.007e15). So the inputs are bounded such that every amount made from them is exact:
//
//   line total  <= maxUnitPrice x quantityPerLine                  = 1e11 x 1000      = 1e14
//   order total <= maxUnitPrice x quantityPerLine x linesPerOrder  = 1e14 x 50        = 5e15 < 2^53
//
// and every partial sum on the way is a smaller integer still, hence exact too. 1e11 minor units is
// a unit price of a billion in a two-decimal currency; the largest power of ten that keeps a full
// order below 2^53. Sums over many orders (ledger balances) are made in SQL; reading one beyond
// 2^53 fails loudly (src/platform/db.ts) rather than rounding.
//
// Outside every module, like errors.ts, because three hold to it: the catalog (prices), orders
// (their size) and the audit (every stored amount).
export const limits = { linesPerOrder: 50, quantityPerLine: 1000 } as const;

/** The largest unit price the catalog accepts, in minor units. */
export const maxUnitPrice = 100_000_000_000;

/** The largest total an order placed within the limits can have. */
export const maxOrderTotal = maxUnitPrice * limits.quantityPerLine * limits.linesPerOrder;

if (!Number.isSafeInteger(maxOrderTotal))
  throw new Error('order limits allow a total beyond 2^53 - 1: lower maxUnitPrice');

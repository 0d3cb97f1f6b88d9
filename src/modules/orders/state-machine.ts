// The order state machine, written down once as data. Every change of status goes through
// transitionOrder (repo.ts), which turns this table into a conditional UPDATE.
export const orderStatuses = ['pending_payment', 'paid', 'payment_failed', 'cancelled', 'fulfilled'] as const;
export type Status = (typeof orderStatuses)[number];

export const transitions: Readonly<Record<Status, readonly Status[]>> = {
  pending_payment: ['paid', 'payment_failed', 'cancelled'],
  paid: ['fulfilled', 'cancelled'],
  payment_failed: [],
  cancelled: [],
  fulfilled: [],
};

/** The states from which `to` may be reached. */
export function statesLeadingTo(to: Status): Status[] {
  return orderStatuses.filter((from) => transitions[from].includes(to));
}

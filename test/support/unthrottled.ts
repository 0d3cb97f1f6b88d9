// Settings under which no test is rate limited nor shed: the apps tests build and the engines they
// start as processes. The limits still count (their code runs in every suite); load shedding is off,
// since a loaded test machine delays the event loop. Suites that test either set their own.
export const unthrottled = {
  RATE_LIMIT_READ_MAX: '100000000',
  RATE_LIMIT_WRITE_MAX: '100000000',
  RATE_LIMIT_AUTH_MAX: '100000000',
  SHED_TARGET_WAIT_MS: '0',
  SHED_EVENT_LOOP_DELAY_MS: '0',
  SHED_SLOW_UPLOADS_PER_CLIENT: '0',
} as const;

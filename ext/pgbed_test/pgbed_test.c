/*
 * pgbed_test: background workers with scripted behaviour, and the SQL API the
 * start-time and lifecycle tests drive -- the PostgreSQL 15 twin of pgbed's
 * Python module node/contrib/pgbed_test.py (same setting, same SQL functions,
 * same status words, same error messages and SQLSTATEs where pgbed raises).
 *
 * - Preloaded (shared_preload_libraries = 'pgbed_test'), _PG_init() registers
 *   the static workers of pgbed_test.static_workers =
 *   'name:start_time:restart_s:behaviour;...'.
 * - After CREATE EXTENSION pgbed_test: pgbed_test_register(),
 *   pgbed_test_status(), pgbed_test_wait_startup(), pgbed_test_wait_shutdown(),
 *   pgbed_test_terminate().
 * - Worker behaviours: 'run', 'sleep:MS', 'exit:N', '_exit:N',
 *   'ignore:SIGNAME', 'crash'.
 */
#include "postgres.h"

#include <ctype.h>
#include <signal.h>
#include <unistd.h>

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

PG_MODULE_MAGIC;

void		_PG_init(void);
PGDLLEXPORT void pgbed_test_worker_main(Datum main_arg);

PG_FUNCTION_INFO_V1(pgbed_test_register);
PG_FUNCTION_INFO_V1(pgbed_test_status);
PG_FUNCTION_INFO_V1(pgbed_test_wait_startup);
PG_FUNCTION_INFO_V1(pgbed_test_wait_shutdown);
PG_FUNCTION_INFO_V1(pgbed_test_terminate);

#define PGBED_TEST_TYPE "pgbed_test"

static char *static_workers = NULL;

/*
 * PostgreSQL 15's BackgroundWorkerHandle (src/backend/postmaster/bgworker.c)
 * is opaque; its layout has been {int slot; uint64 generation;} since 9.4.
 */
typedef struct LocalHandle
{
	int			slot;
	uint64		generation;
} LocalHandle;

typedef enum Kind
{
	K_RUN, K_SLEEP, K_EXIT, K__EXIT, K_IGNORE, K_CRASH
} Kind;

typedef struct Behaviour
{
	Kind		kind;
	long		num;			/* sleep/exit/_exit */
	int			signo;			/* ignore */
} Behaviour;

/* Python's signal.Signals names (Linux) */
static const struct
{
	const char *name;
	int			signo;
}			signames[] =
{
	{"SIGHUP", SIGHUP}, {"SIGINT", SIGINT}, {"SIGQUIT", SIGQUIT}, {"SIGILL", SIGILL},
	{"SIGTRAP", SIGTRAP}, {"SIGABRT", SIGABRT}, {"SIGIOT", SIGIOT}, {"SIGBUS", SIGBUS},
	{"SIGFPE", SIGFPE}, {"SIGKILL", SIGKILL}, {"SIGUSR1", SIGUSR1}, {"SIGSEGV", SIGSEGV},
	{"SIGUSR2", SIGUSR2}, {"SIGPIPE", SIGPIPE}, {"SIGALRM", SIGALRM}, {"SIGTERM", SIGTERM},
#ifdef SIGSTKFLT
	{"SIGSTKFLT", SIGSTKFLT},
#endif
	{"SIGCHLD", SIGCHLD}, {"SIGCONT", SIGCONT}, {"SIGSTOP", SIGSTOP}, {"SIGTSTP", SIGTSTP},
	{"SIGTTIN", SIGTTIN}, {"SIGTTOU", SIGTTOU}, {"SIGURG", SIGURG}, {"SIGXCPU", SIGXCPU},
	{"SIGXFSZ", SIGXFSZ}, {"SIGVTALRM", SIGVTALRM}, {"SIGPROF", SIGPROF},
	{"SIGWINCH", SIGWINCH}, {"SIGIO", SIGIO},
#ifdef SIGPOLL
	{"SIGPOLL", SIGPOLL},
#endif
#ifdef SIGPWR
	{"SIGPWR", SIGPWR},
#endif
	{"SIGSYS", SIGSYS},
};

/* Python str.strip(): a palloc'd copy without surrounding whitespace */
static char *
strip_copy(const char *s)
{
	const char *end;

	while (*s && isspace((unsigned char) *s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char) end[-1]))
		end--;
	return pnstrdup(s, end - s);
}

/*
 * parse_behaviour(): NULL on success, else the error message (pgbed's
 * wording, SQLSTATE 22023 for the caller).
 */
static char *
parse_behaviour(const char *text, Behaviour *b)
{
	char	   *t = strip_copy(text);
	char	   *colon = strchr(t, ':');
	char	   *arg = "";
	const char *kind = t;

	if (colon)
	{
		*colon = '\0';
		arg = colon + 1;
	}
	memset(b, 0, sizeof(*b));
	if (strcmp(kind, "run") == 0)
		b->kind = K_RUN;
	else if (strcmp(kind, "sleep") == 0)
		b->kind = K_SLEEP;
	else if (strcmp(kind, "exit") == 0)
		b->kind = K_EXIT;
	else if (strcmp(kind, "_exit") == 0)
		b->kind = K__EXIT;
	else if (strcmp(kind, "ignore") == 0)
		b->kind = K_IGNORE;
	else if (strcmp(kind, "crash") == 0)
		b->kind = K_CRASH;
	else
		return psprintf("invalid behaviour \"%s\"", text);

	if (b->kind == K_SLEEP || b->kind == K_EXIT || b->kind == K__EXIT)
	{
		/* Python: arg.lstrip("-").isdigit() */
		const char *p = arg;
		bool		neg = false;

		while (*p == '-')
		{
			neg = !neg;
			p++;
		}
		if (*p == '\0')
			return psprintf("behaviour \"%s\" needs a number", text);
		for (const char *q = p; *q; q++)
			if (!isdigit((unsigned char) *q))
				return psprintf("behaviour \"%s\" needs a number", text);
		b->num = strtol(p, NULL, 10);
		if (neg && p - arg == 1)
			b->num = -b->num;
	}
	if (b->kind == K_IGNORE)
	{
		char	   *name = strncmp(arg, "SIG", 3) == 0 ? arg : psprintf("SIG%s", arg);
		bool		found = false;

		for (int i = 0; i < lengthof(signames); i++)
			if (strcmp(signames[i].name, name) == 0)
			{
				b->signo = signames[i].signo;
				found = true;
				break;
			}
		if (!found)
			return psprintf("invalid signal in behaviour \"%s\"", text);
	}
	return NULL;
}

/* StartTime.parse(): NULL on success, else the error message */
static char *
parse_start_time(const char *text, BgWorkerStartTime *st)
{
	char	   *key = strip_copy(text);

	for (char *p = key; *p; p++)
	{
		*p = pg_tolower((unsigned char) *p);
		if (*p == ' ')
			*p = '_';
	}
	if (strcmp(key, "postmaster_start") == 0 || strcmp(key, "postmasterstart") == 0)
		*st = BgWorkerStart_PostmasterStart;
	else if (strcmp(key, "consistent_state") == 0 || strcmp(key, "consistentstate") == 0)
		*st = BgWorkerStart_ConsistentState;
	else if (strcmp(key, "recovery_finished") == 0 || strcmp(key, "recoveryfinished") == 0)
		*st = BgWorkerStart_RecoveryFinished;
	else
		return psprintf("invalid start time \"%s\"", text);
	return NULL;
}

/*
 * make_worker(): fill *w like pgbed's make_worker(). Returns NULL or the
 * error message (SQLSTATE 22023).
 */
static char *
make_worker(BackgroundWorker *w, const char *name, const char *start_time, int restart_s,
			int flags, const char *behaviour, pid_t notify_pid)
{
	BgWorkerStartTime st = BgWorkerStart_PostmasterStart;
	Behaviour	b;
	char	   *err;
	size_t		blen = strlen(behaviour);

	if ((err = parse_start_time(start_time, &st)) != NULL)
		return err;
	if ((err = parse_behaviour(behaviour, &b)) != NULL)
		return err;
	/* pgbed's own BGW-3 additions; PostgreSQL would silently truncate */
	if (strlen(name) >= BGW_MAXLEN)
		return psprintf("background worker \"%.40s\": name too long", name);
	if (blen > BGW_EXTRALEN)
		return psprintf("background worker \"%s\": extra data too long", name);

	memset(w, 0, sizeof(*w));
	strlcpy(w->bgw_name, name, BGW_MAXLEN);
	strlcpy(w->bgw_type, PGBED_TEST_TYPE, BGW_MAXLEN);
	w->bgw_flags = flags;
	w->bgw_start_time = st;
	w->bgw_restart_time = restart_s < 0 ? BGW_NEVER_RESTART : restart_s;
	strlcpy(w->bgw_library_name, "pgbed_test", BGW_MAXLEN);
	strlcpy(w->bgw_function_name, "pgbed_test_worker_main", BGW_MAXLEN);
	w->bgw_main_arg = (Datum) 0;
	memcpy(w->bgw_extra, behaviour, blen);	/* NUL-padded unless exactly 128 */
	w->bgw_notify_pid = notify_pid;
	return NULL;
}

void
_PG_init(void)
{
	char	   *spec;
	char	   *save = NULL;

	DefineCustomStringVariable("pgbed_test.static_workers",
							   "Static background workers: name:start_time:restart_s:behaviour;...",
							   NULL, &static_workers, "", PGC_POSTMASTER, 0,
							   NULL, NULL, NULL);
	if (!process_shared_preload_libraries_in_progress || static_workers == NULL)
		return;

	spec = pstrdup(static_workers);
	for (char *tok = strtok_r(spec, ";", &save); tok; tok = strtok_r(NULL, ";", &save))
	{
		char	   *item = strip_copy(tok);
		char	   *parts[3];
		char	   *rest = item;
		char	   *behaviour;
		char	   *end;
		long		restart;
		int			n = 0;
		BackgroundWorker w;
		char	   *err;

		if (*item == '\0')
			continue;
		while (n < 3)
		{
			char	   *c = strchr(rest, ':');

			if (!c)
				break;
			*c = '\0';
			parts[n++] = rest;
			rest = c + 1;
		}
		if (n < 3)
		{
			elog(LOG, "pgbed_test: invalid static worker \"%s\"", strip_copy(tok));
			continue;
		}
		behaviour = rest;
		/* Python int(): surrounding whitespace allowed */
		errno = 0;
		restart = strtol(parts[2], &end, 10);
		while (*end && isspace((unsigned char) *end))
			end++;
		if (end == parts[2] || *end != '\0' || errno != 0)
		{
			elog(LOG, "pgbed_test: invalid static worker \"%s\": invalid literal for int() with base 10: '%s'",
				 strip_copy(tok), parts[2]);
			continue;
		}
		err = make_worker(&w, parts[0], parts[1], (int) restart, BGWORKER_SHMEM_ACCESS, behaviour, 0);
		if (err)
		{
			elog(LOG, "pgbed_test: invalid static worker \"%s\": %s", strip_copy(tok), err);
			continue;
		}
		RegisterBackgroundWorker(&w);
	}
}

/* -- the worker ---------------------------------------------------------- */

void
pgbed_test_worker_main(Datum main_arg)
{
	char		extra[BGW_EXTRALEN + 1];
	Behaviour	b;
	char	   *err;

	memcpy(extra, MyBgworkerEntry->bgw_extra, BGW_EXTRALEN);
	extra[BGW_EXTRALEN] = '\0';

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	err = parse_behaviour(extra, &b);
	if (err)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s", err)));
	if (b.kind == K_IGNORE)
	{
		if (pqsignal(b.signo, SIG_IGN) == SIG_ERR)
			ereport(ERROR, (errmsg("could not ignore signal %d: %m", b.signo)));
		b.kind = K_RUN;
	}
	BackgroundWorkerUnblockSignals();

	switch (b.kind)
	{
		case K_EXIT:
			proc_exit((int) b.num);
			break;
		case K__EXIT:
			_exit((int) b.num);
			break;
		case K_CRASH:
			pqsignal(SIGSEGV, SIG_DFL);
			kill(getpid(), SIGSEGV);
			pg_usleep(1000000L);
			_exit(139);			/* not reached */
			break;
		case K_SLEEP:
			{
				TimestampTz end = GetCurrentTimestamp() + (TimestampTz) b.num * 1000;

				for (;;)
				{
					long		left_ms;

					CHECK_FOR_INTERRUPTS();
					left_ms = (long) ((end - GetCurrentTimestamp()) / 1000);
					if (left_ms <= 0)
						break;
					(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
									 left_ms, PG_WAIT_EXTENSION);
					ResetLatch(MyLatch);
				}
				return;			/* exit 0 */
			}
		case K_RUN:
		case K_IGNORE:
			for (;;)
			{
				CHECK_FOR_INTERRUPTS();
				if (ConfigReloadPending)
				{
					ConfigReloadPending = false;
					ProcessConfigFile(PGC_SIGHUP);
				}
				(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 10000L, PG_WAIT_EXTENSION);
				ResetLatch(MyLatch);
			}
	}
}

/* -- SQL API ---------------------------------------------------------------- */

static void
put_row(FunctionCallInfo fcinfo, Datum *values, bool *nulls)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

Datum
pgbed_test_register(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *start_time = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int32		restart_s = PG_GETARG_INT32(2);
	ArrayType  *flags_arr = PG_GETARG_ARRAYTYPE_P(3);
	char	   *behaviour = text_to_cstring(PG_GETARG_TEXT_PP(4));
	Datum	   *elems;
	bool	   *elem_nulls;
	int			nelems;
	int			bits = 0;
	BackgroundWorker w;
	BackgroundWorkerHandle *handle;
	char	   *err;

	SetSingleFuncCall(fcinfo, 0);

	/* pgbed checks start time and behaviour before the flags */
	err = make_worker(&w, name, start_time, restart_s, 0, behaviour, MyProcPid);
	if (err)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s", err)));

	deconstruct_array(flags_arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &elem_nulls, &nelems);
	for (int i = 0; i < nelems; i++)
	{
		char	   *f = elem_nulls[i] ? "None" : TextDatumGetCString(elems[i]);

		if (!elem_nulls[i] && strcmp(f, "shmem") == 0)
			bits |= BGWORKER_SHMEM_ACCESS;
		else if (!elem_nulls[i] && strcmp(f, "database") == 0)
			bits |= BGWORKER_BACKEND_DATABASE_CONNECTION;
		else
			ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							errmsg("invalid flag \"%s\"", f)));
	}
	w.bgw_flags = bits;

	if (RegisterDynamicBackgroundWorker(&w, &handle))
	{
		LocalHandle *h = (LocalHandle *) handle;
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = Int32GetDatum(h->slot);
		values[1] = Int64GetDatum((int64) h->generation);
		put_row(fcinfo, values, nulls);
	}
	return (Datum) 0;
}

static BackgroundWorkerHandle *
make_handle(int32 slot, int64 generation)
{
	LocalHandle *h;

	if (slot < 0 || slot >= max_worker_processes)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("invalid background worker slot %d", slot)));
	h = palloc(sizeof(LocalHandle));
	h->slot = slot;
	h->generation = (uint64) generation;
	return (BackgroundWorkerHandle *) h;
}

static const char *
status_word(BgwHandleStatus st)
{
	switch (st)
	{
		case BGWH_STARTED:
			return "started";
		case BGWH_NOT_YET_STARTED:
			return "not yet started";
		case BGWH_STOPPED:
			return "stopped";
		case BGWH_POSTMASTER_DIED:
			return "postmaster died";
	}
	return "unknown";
}

static void
status_row(FunctionCallInfo fcinfo, BgwHandleStatus st, pid_t pid)
{
	Datum		values[2];
	bool		nulls[2] = {false, false};

	values[0] = CStringGetTextDatum(status_word(st));
	values[1] = Int32GetDatum((int32) pid);
	nulls[1] = (pid == 0);
	put_row(fcinfo, values, nulls);
}

/*
 * pgbed's Handle._wait(): reset latch, check interrupts, read the status,
 * done? else sleep on the latch for at most 1 s (so a caller that is not the
 * notify pid still sees the change), or postmaster death.
 */
static BgwHandleStatus
wait_for(BackgroundWorkerHandle *h, bool startup, pid_t *pid)
{
	BgwHandleStatus st;

	for (;;)
	{
		int			rc;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		*pid = 0;
		st = GetBackgroundWorkerPid(h, pid);
		if (startup ? st != BGWH_NOT_YET_STARTED : st == BGWH_STOPPED)
			return st;
		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_POSTMASTER_DEATH, 1000L,
					   startup ? WAIT_EVENT_BGWORKER_STARTUP : WAIT_EVENT_BGWORKER_SHUTDOWN);
		if (rc & WL_POSTMASTER_DEATH)
		{
			*pid = 0;
			return BGWH_POSTMASTER_DIED;
		}
	}
}

Datum
pgbed_test_status(PG_FUNCTION_ARGS)
{
	BackgroundWorkerHandle *h = make_handle(PG_GETARG_INT32(0), PG_GETARG_INT64(1));
	pid_t		pid = 0;
	BgwHandleStatus st;

	SetSingleFuncCall(fcinfo, 0);
	st = GetBackgroundWorkerPid(h, &pid);
	status_row(fcinfo, st, st == BGWH_STARTED ? pid : 0);
	return (Datum) 0;
}

Datum
pgbed_test_wait_startup(PG_FUNCTION_ARGS)
{
	BackgroundWorkerHandle *h = make_handle(PG_GETARG_INT32(0), PG_GETARG_INT64(1));
	pid_t		pid = 0;
	BgwHandleStatus st;

	SetSingleFuncCall(fcinfo, 0);
	st = wait_for(h, true, &pid);
	if (st == BGWH_POSTMASTER_DIED)
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						errmsg("cannot start background processes without postmaster"),
						errhint("Kill all remaining database processes and restart the database.")));
	status_row(fcinfo, st, st == BGWH_STARTED ? pid : 0);
	return (Datum) 0;
}

Datum
pgbed_test_wait_shutdown(PG_FUNCTION_ARGS)
{
	BackgroundWorkerHandle *h = make_handle(PG_GETARG_INT32(0), PG_GETARG_INT64(1));
	pid_t		pid = 0;
	BgwHandleStatus st;

	SetSingleFuncCall(fcinfo, 0);
	st = wait_for(h, false, &pid);
	status_row(fcinfo, st, st == BGWH_STARTED ? pid : 0);
	return (Datum) 0;
}

Datum
pgbed_test_terminate(PG_FUNCTION_ARGS)
{
	BackgroundWorkerHandle *h = make_handle(PG_GETARG_INT32(0), PG_GETARG_INT64(1));

	TerminateBackgroundWorker(h);
	PG_RETURN_VOID();
}

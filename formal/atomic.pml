/*
 * Atomic key-set update of OTA-Key (docs/protocol.md §6, §7) as a spin
 * model: device, agent and cloud, over channels that lose, duplicate and
 * reorder messages, with device power loss (RAM lost, only the key store
 * kept; a flash write cut by it did not happen) and agent crashes between
 * the two halves of its two-step actions (cloud call, database write).
 *
 * Checked by scripts/verify.sh (spin -a, pan exhaustive). Built with
 * -DBROKEN_EARLY_DELETE or -DBROKEN_COMMIT_ON_RESPONSE it models a broken
 * agent or device, which spin must catch.
 *  A1 the old credentials are deleted only once the device holds the new set;
 *  A2 once the device has committed a set, it always holds a set its cloud
 *     accepts (active or staged);
 *  A3 when nothing can move any more (all messages delivered or lost, no
 *     retry pending), device and agent agree on one committed version, with
 *     nothing staged or pending, and the cloud accepts it.
 */

#ifndef MAXV
#define MAXV 4        /* versions the agent may issue */
#endif
#ifndef MAXDROP
#define MAXDROP 2     /* messages the network may lose */
#endif
#ifndef MAXDUP
#define MAXDUP 2      /* messages the network may duplicate */
#endif
#ifndef MAXPOWER
#define MAXPOWER 1    /* device power losses */
#endif
#ifndef MAXCRASH
#define MAXCRASH 1    /* agent crashes */
#endif
#ifndef UPDATES
#define UPDATES 1     /* updates the device asks for after its claim */
#endif
#ifndef CAP
#define CAP 3
#endif

mtype = { CLAIM, UPDATE_REQ, RESP, STATUS, CONFIRM, ABORT, ACK, NACK, NOTIFY };

/* (type, version, request): the request id stands for the request's nonce
 * and ephemeral key, which RESP (signature over th) and STATUS (MAC over
 * the nonce) are bound to. */
chan up = [CAP] of { mtype, byte, byte };
chan down = [CAP] of { mtype, byte, byte };

bool valid[MAXV + 1];   /* the cloud: which key sets' credentials it accepts */

byte d_active, d_staged;        /* device flash: committed and staged version */
bool d_waiting;                 /* device RAM: a request is in flight */
byte d_req;                     /* device RAM: id of the request in flight */
byte d_updates;                 /* updates asked for so far */

byte a_committed, a_pending, a_issued, a_stale;   /* agent database */
byte a_pending_req;                                /* the request the pending claim answered */

byte drops, dups, powers, crashes;

/* A2: once committed, the device holds a set its cloud accepts. */
#define USABLE (d_active == 0 || valid[d_active] || (d_staged != 0 && valid[d_staged]))

inline issue()
{
    a_issued++;
    valid[a_issued] = true;            /* cloud client created first */
#ifdef BROKEN_EARLY_DELETE
    /* A broken agent: retires the old credentials when it issues the new set. */
    if
    :: a_committed != 0 -> valid[a_committed] = false
    :: else -> skip
    fi;
#endif
    if
    :: crashes < MAXCRASH -> crashes++ /* crash before the database write: an orphan client */
    :: true -> a_pending = a_issued; a_pending_req = r; down!RESP, a_issued, r
    fi
}

/* Power comes back: RAM is lost; firmware resumes from the key store and
 * polls the agent at boot (a claim starts over with a new request). */
inline boot()
{
    powers++;
    d_waiting = false;
    if
    :: d_active == 0 && d_staged == 0 && nfull(up) -> d_req++; up!CLAIM, 0, d_req; d_waiting = true
    :: d_active != 0 && d_staged == 0 && nfull(up) -> d_req++; up!UPDATE_REQ, d_active, d_req; d_waiting = true
    :: else -> skip
    fi
}

proctype Device()
{
    byte v, r;
end:
    do
    /* New requests, and retransmission of the same one once nothing is in flight. */
    :: atomic { d_active == 0 && d_staged == 0 && !d_waiting && nfull(up) ->
           d_req++; up!CLAIM, 0, d_req; d_waiting = true }
    :: atomic { d_active != 0 && d_staged == 0 && !d_waiting && d_updates < UPDATES && nfull(up) ->
           d_req++; up!UPDATE_REQ, d_active, d_req; d_waiting = true; d_updates++ }
    :: atomic { d_waiting && d_staged == 0 && empty(up) && empty(down) ->
           if
           :: d_active == 0 -> up!CLAIM, 0, d_req
           :: else -> up!UPDATE_REQ, d_active, d_req
           fi }
    /* A staged set is proven on the cloud, then confirmed or aborted (retried when quiet). */
    :: atomic { d_staged != 0 && empty(up) && empty(down) ->
           if
           :: valid[d_staged] -> up!CONFIRM, d_staged, 0
           :: !valid[d_staged] -> up!ABORT, d_staged, 0
           fi }
    :: atomic { down?RESP, v, r ->
           if
           :: d_waiting && r == d_req && v > d_active ->
#ifdef BROKEN_COMMIT_ON_RESPONSE
               /* A broken device: commits what it receives, before any proof. */
               d_active = v; d_staged = 0; d_waiting = false
#else
               d_staged = v; d_waiting = false     /* stage: erase + program the other slot */
#endif
           :: d_waiting && r == d_req && v > d_active && powers < MAXPOWER -> boot()  /* cut */
           :: else -> skip                          /* not for this request: refused */
           fi }
    :: atomic { down?STATUS, v, r ->
           if
           :: d_waiting && r == d_req && v == d_active -> d_waiting = false
           :: else -> skip
           fi }
    :: atomic { down?ACK, v, r ->
           if
           :: v != 0 && v == d_staged -> d_active = v; d_staged = 0   /* the commit marker */
           :: v != 0 && v == d_staged && powers < MAXPOWER -> boot()   /* cut: marker torn */
           :: else -> skip
           fi }
    :: atomic { down?NACK, v, r ->
           if
           :: v != 0 && v == d_staged -> d_staged = 0
           :: else -> skip
           fi }
    :: atomic { down?NOTIFY, v, r ->
           if
           :: !d_waiting && d_staged == 0 && v == d_active && v != 0 && nfull(up) ->
               d_req++; up!UPDATE_REQ, d_active, d_req; d_waiting = true
           :: else -> skip
           fi }
    /* Power loss at any other moment. */
    :: atomic { powers < MAXPOWER -> boot() }
    od
}

proctype Agent()
{
    byte v, r, old;
end:
    do
    :: atomic { up?CLAIM, v, r ->
           if
           :: a_committed != 0 -> skip                                   /* ALREADY_CLAIMED */
           :: a_committed == 0 && a_pending != 0 && r == a_pending_req ->
               down!RESP, a_pending, r                                  /* same request: cached */
           :: a_committed == 0 && a_issued < MAXV && (a_pending == 0 || r != a_pending_req) ->
               if                                                       /* another request: supersede */
               :: a_pending != 0 -> valid[a_pending] = false; a_pending = 0
               :: else -> skip
               fi;
               issue()
           :: else -> skip
           fi }
    :: atomic { up?UPDATE_REQ, v, r ->
           if
           :: v != a_committed -> skip                                   /* ROLLBACK / STALE */
           :: v == a_committed && a_pending != 0 -> down!RESP, a_pending, r  /* the same set again */
           :: v == a_committed && a_pending == 0 && a_issued < MAXV -> issue()
           :: v == a_committed && a_pending == 0 -> down!STATUS, v, r
           fi }
    :: atomic { up?CONFIRM, v, r ->
           if
           :: v != 0 && v == a_committed -> down!ACK, v, 0                /* idempotent */
           :: v != 0 && v == a_pending ->
               /* A1: the device holds v: it proved it and confirmed. */
               assert(d_staged == v || d_active == v);
               old = a_committed;
               a_committed = v; a_pending = 0;                          /* one transaction */
               if
               :: old != 0 && crashes < MAXCRASH -> crashes++; a_stale = old  /* delete not done */
               :: old != 0 -> valid[old] = false
               :: old == 0 -> skip
               fi;
               down!ACK, v, 0
           :: v != 0 && v != a_committed && v != a_pending && v <= a_issued -> down!NACK, v, 0
           :: else -> skip
           fi }
    :: atomic { up?ABORT, v, r ->
           if
           :: v != 0 && v == a_pending -> valid[v] = false; a_pending = 0; down!NACK, v, 0
           :: v != 0 && v == a_committed -> down!ACK, v, 0
           :: v != 0 && v != a_pending && v != a_committed && v <= a_issued -> down!NACK, v, 0
           :: else -> skip
           fi }
    /* Cleanup after a crash: retired credentials are deleted. */
    :: atomic { a_stale != 0 -> valid[a_stale] = false; a_stale = 0 }
    /* An issued update not confirmed yet is offered again (NOTIFY resend). */
    :: atomic { a_pending != 0 && a_committed != 0 && empty(up) && empty(down) ->
           down!NOTIFY, a_committed, 0 }
    od
}

proctype Network()
{
    mtype t;
    byte v, r;
end:
    do
    :: atomic { drops < MAXDROP && nempty(up) -> up?t, v, r; drops++ }
    :: atomic { drops < MAXDROP && nempty(down) -> down?t, v, r; drops++ }
    :: atomic { dups < MAXDUP && nempty(up) && nfull(up) -> up?<t, v, r>; up!t, v, r; dups++ }
    :: atomic { dups < MAXDUP && nempty(down) && nfull(down) -> down?<t, v, r>; down!t, v, r; dups++ }
    od
}

proctype Monitor()
{
end:
    do
    :: atomic { !USABLE -> assert(USABLE) }                    /* A2: enabled only if violated */
    :: timeout ->                                              /* A3, when nothing else can move */
        assert(d_staged == 0 && a_pending == 0 && d_active == a_committed &&
               d_active != 0 && valid[d_active]);
        break
    od
}

init
{
    atomic {
        run Device();
        run Agent();
        run Network();
        run Monitor()
    }
}

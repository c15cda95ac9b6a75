"""The RQ task of bench/peers/run.py, and its enqueuer (run with Debian's python3, which has python3-rq).

    python3 rq_tasks.py URL QUEUE N BATCH   enqueues N no-op jobs with Queue.enqueue_many, BATCH to a
                                            pipeline, and prints {"seconds": ...} (connect excluded)

Jobs keep RQ's defaults: result_ttl 500 s (the job hash and its entry in the FinishedJobRegistry
stay for 500 s after it finishes)."""
import json
import sys
import time


def noop(i):
    pass


def main():
    from redis import Redis
    from rq import Queue

    import rq_tasks  # the workers import noop by this module's name, not __main__

    url, queue_name, n, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    redis = Redis.from_url(url)
    redis.ping()
    queue = Queue(queue_name, connection=redis)
    start = time.perf_counter()
    for first in range(0, n, batch):
        with redis.pipeline() as pipe:
            queue.enqueue_many([Queue.prepare_data(rq_tasks.noop, args=(i,))
                                for i in range(first, min(n, first + batch))], pipeline=pipe)
            pipe.execute()
    print(json.dumps({"seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main()

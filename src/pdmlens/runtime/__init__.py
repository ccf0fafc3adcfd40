"""Process-wide runtime services the library shares: the CPU thread budget
(:mod:`pdmlens.runtime.threads`), reusable host buffers (:mod:`pdmlens.runtime.buffers`) and
persistent single-threaded workers (:mod:`pdmlens.runtime.workers`). Nothing here knows
about models or explanations."""

// A thread that may fail to start. std::thread throws std::system_error when clone() fails (a pids
// cgroup at its limit: a pod's PID limit), and node-gyp builds the addons with -fno-exceptions, so
// that throw ended the agent in std::terminate. Worker starts its thread with pthread_create, whose
// failure is a return value: the caller then runs the work on its own thread instead.
#ifndef KBP_THREADS_H
#define KBP_THREADS_H

#include <pthread.h>

#include <functional>
#include <memory>
#include <utility>

namespace kbp_threads {

class Worker {
 public:
  Worker() = default;
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  Worker(Worker&& o) noexcept : t_(o.t_), started_(o.started_) { o.started_ = false; }
  ~Worker() { Join(); }

  // runs fn on a new thread; false when none could be started (fn was not run)
  bool Start(std::function<void()> fn) {
    auto* f = new std::function<void()>(std::move(fn));
    if (pthread_create(&t_, nullptr, &Worker::Run, f) != 0) {
      delete f;
      return false;
    }
    started_ = true;
    return true;
  }

  void Join() {
    if (!started_) return;
    pthread_join(t_, nullptr);
    started_ = false;
  }

 private:
  static void* Run(void* p) {
    std::unique_ptr<std::function<void()>> f(static_cast<std::function<void()>*>(p));
    (*f)();
    return nullptr;
  }
  pthread_t t_{};
  bool started_ = false;
};

}  // namespace kbp_threads

#endif

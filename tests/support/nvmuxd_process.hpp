#pragma once
// Runs the real nvmuxd binary as a child process for tests: waits for its "ready" line, stops it
// with SIGTERM (or kills it with SIGKILL), and reports how it ended. Bounded: a daemon that does
// not become ready within the deadline is killed and reported.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace nvmux::test {

class NvmuxdProcess {
 public:
  // Starts `binary` with `args` (--socket is added) and waits up to `ready_ms` for its ready line.
  NvmuxdProcess(std::string binary, std::string socket, std::vector<std::string> args, int ready_ms = 20000)
      : socket_(std::move(socket)) {
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], STDOUT_FILENO);
      std::vector<std::string> all{binary, "--socket", socket_};
      all.insert(all.end(), args.begin(), args.end());
      std::vector<char*> argv;
      for (auto& a : all) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(binary.c_str(), argv.data());
      _exit(127);
    }
    close(out[1]);
    stdout_ = out[0];
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ready_ms);
    while (std::chrono::steady_clock::now() < deadline && output_.find("ready on") == std::string::npos) {
      pollfd p{stdout_, POLLIN, 0};
      if (::poll(&p, 1, 100) == 1) {
        char buf[512];
        ssize_t n = read(stdout_, buf, sizeof(buf));
        if (n <= 0) break;
        output_.append(buf, static_cast<std::size_t>(n));
      }
    }
    ready_ = output_.find("ready on") != std::string::npos;
  }
  // Stops a daemon still running (SIGTERM, then SIGKILL after 5 s) and removes the socket files a
  // killed one leaves behind, so tests leave nothing in /tmp or the build tree. Note: a later
  // daemon on the same path must be started after this one is destroyed.
  ~NvmuxdProcess() {
    if (pid_ > 0 && !reaped_ && stop(SIGTERM, 5000) == -1) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (stdout_ >= 0) close(stdout_);
    if (pid_ > 0 && ready_) {  // only a daemon that became ready owned the socket files
      ::unlink(socket_.c_str());
      const std::string suffix = ".sock";
      const bool sock = socket_.size() > suffix.size() && socket_.ends_with(suffix);
      ::unlink((sock ? socket_.substr(0, socket_.size() - suffix.size()) + ".rpc.sock" : socket_ + ".rpc").c_str());
    }
  }
  NvmuxdProcess(const NvmuxdProcess&) = delete;
  NvmuxdProcess& operator=(const NvmuxdProcess&) = delete;

  bool ready() const { return ready_; }
  pid_t pid() const { return pid_; }
  const std::string& output() const { return output_; }
  const std::string& socket() const { return socket_; }

  // Sends `sig` and waits up to `wait_ms`; returns the wait status, or -1 when it did not exit.
  int stop(int sig = SIGTERM, int wait_ms = 20000) {
    if (pid_ <= 0 || reaped_) return -1;
    kill(pid_, sig);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
    int status = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        reaped_ = true;
        return status;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }

  // CPU time (user + system) the daemon used so far, in seconds.
  double cpu_seconds() const {
    std::ifstream stat("/proc/" + std::to_string(pid_) + "/stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    std::size_t close_paren = text.rfind(')');
    if (close_paren == std::string::npos) return -1;
    std::istringstream fields(text.substr(close_paren + 2));
    std::string f;
    std::vector<std::string> v;
    while (fields >> f) v.push_back(f);
    if (v.size() < 13) return -1;
    // Fields 14 and 15 of /proc/PID/stat (utime, stime); v[0] is field 3.
    return static_cast<double>(std::stoull(v[11]) + std::stoull(v[12])) / static_cast<double>(sysconf(_SC_CLK_TCK));
  }

 private:
  std::string socket_;
  pid_t pid_ = -1;
  int stdout_ = -1;
  std::string output_;
  bool ready_ = false;
  bool reaped_ = false;
};

}  // namespace nvmux::test

# Two commands for a fresh machine (each sets itself up in ./.venv):
#   make demo   -- the main job on the embedded Middlebury Motorcycle pair: bag -> ROS 2 stereo node -> report
#   make test   -- the whole test suite (core without ROS, and real rclpy publish/subscribe tests)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is pinned: this version installs a CPU wheel; any other spec pulls gigabytes of CUDA packages.
TORCH  := torch==2.13.0
ROS_WHEELS := ros-rclpy ros-sensor-msgs ros-stereo-msgs ros-std-msgs ros-geometry-msgs ros-diagnostic-msgs ros-rmw-fastrtps-cpp
# Keep DDS discovery on this machine.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

.PHONY: setup demo test clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/activate setup.py package.xml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet $(ROS_WHEELS)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/stereo-depth-ros demo

test: setup
	$(BIN)/python -m pytest -q test

clean:
	rm -rf $(VENV) build install log stereo_depth_demo

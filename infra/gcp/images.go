package gcp

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/pulumi/pulumi-gcp/sdk/v9/go/gcp/compute"
	"github.com/pulumi/pulumi-gcp/sdk/v9/go/gcp/storage"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"kubeup.dev/kubeup/infra/cloud"
)

// ImageSpec is one image of the images stack.
type ImageSpec struct {
	cloud.Image
	// Adopt is the self link of an image already published for this
	// digest, which the stack does not create: it must be one this stack
	// does not own, or the next run deletes it.
	Adopt string
}

// BucketLabel marks the images bucket (it belongs to no cluster).
const BucketLabel = "kubeup-images"

// BucketName is an images stack's bucket: kubeup-images-<hash of the
// project and the images' digests>. Bucket names are global, and each
// image digest has a stack of its own (published images outlive clusters),
// so one name per project would collide between those stacks.
func BucketName(project string, images []ImageSpec) string {
	h := sha256.New()
	h.Write([]byte(project))
	for _, img := range images {
		fmt.Fprintf(h, "\n%s:%s", img.Role, img.SHA256)
	}
	return "kubeup-images-" + hex.EncodeToString(h.Sum(nil))[:16]
}

// ObjectName is the uploaded tar.gz of an image: <role>-<sha256>.tar.gz.
func ObjectName(img cloud.Image) string { return img.Role + "-" + img.SHA256 + ".tar.gz" }

// ImageProgram is the inline program of a project's images stack: a
// private bucket, and per image not adopted the uploaded tar.gz and the
// image made from it. It exports "image/<role>": the image's self link.
func ImageProgram(project, region string, images []ImageSpec) pulumi.RunFunc {
	return func(ctx *pulumi.Context) error {
		if err := checkImages(project, region, images); err != nil {
			return err
		}
		name := BucketName(project, images)
		bucket, err := storage.NewBucket(ctx, name, &storage.BucketArgs{
			Name:                     pulumi.String(name),
			Project:                  pulumi.String(project),
			Location:                 pulumi.String(strings.ToUpper(region)),
			UniformBucketLevelAccess: pulumi.Bool(true),
			PublicAccessPrevention:   pulumi.String("enforced"),
			// The tar.gz files are only read once, to make the images:
			// deleted ones need not be kept (and billed) for a week.
			SoftDeletePolicy: &storage.BucketSoftDeletePolicyArgs{RetentionDurationSeconds: pulumi.Int(0)},
			Labels:           pulumi.StringMap{BucketLabel: pulumi.String("true")},
		})
		if err != nil {
			return err
		}
		for _, img := range images {
			if img.Adopt != "" {
				ctx.Export("image/"+img.Role, pulumi.String(img.Adopt))
				continue
			}
			obj, err := storage.NewBucketObject(ctx, ObjectName(img.Image), &storage.BucketObjectArgs{
				Bucket:      bucket.Name,
				Name:        pulumi.String(ObjectName(img.Image)),
				Source:      pulumi.NewFileAsset(img.Path),
				ContentType: pulumi.String("application/gzip"),
			})
			if err != nil {
				return err
			}
			features := compute.ImageGuestOsFeatureArray{}
			// No SEV_CAPABLE: the image is not tested on confidential VMs.
			for _, f := range imageFeatures(img.Image) {
				features = append(features, compute.ImageGuestOsFeatureArgs{Type: pulumi.String(f)})
			}
			image, err := compute.NewImage(ctx, img.ImageName(), &compute.ImageArgs{
				Name:            pulumi.String(img.ImageName()),
				Project:         pulumi.String(project),
				Family:          pulumi.String("kubeup-" + img.Role),
				Description:     pulumi.String("kubeup " + img.Role + " image, manifest sha256:" + img.SHA256),
				RawDisk:         &compute.ImageRawDiskArgs{Source: pulumi.Sprintf("https://storage.googleapis.com/%s/%s", bucket.Name, obj.Name)},
				GuestOsFeatures: features,
				Labels: pulumi.StringMap{
					cloud.ImageLabel: pulumi.String(img.ShortDigest()),
					cloud.RoleLabel:  pulumi.String(img.Role),
				},
			})
			if err != nil {
				return err
			}
			ctx.Export("image/"+img.Role, image.SelfLink)
		}
		return nil
	}
}

func imageFeatures(img cloud.Image) []string {
	var out []string
	if img.UEFI {
		out = append(out, "UEFI_COMPATIBLE")
	}
	return append(out, "VIRTIO_SCSI_MULTIQUEUE", "GVNIC")
}

func checkImages(project, region string, images []ImageSpec) error {
	var e errs
	if project == "" {
		e.add("no project")
	}
	if region == "" {
		e.add("no region")
	}
	if len(images) == 0 {
		e.add("no images")
	}
	seen := map[string]bool{}
	for _, img := range images {
		if img.Role != cloud.RoleMaster && img.Role != cloud.RoleNode {
			e.add("image role %q", img.Role)
		}
		if seen[img.Role] {
			e.add("two %s images", img.Role)
		}
		seen[img.Role] = true
		if len(img.SHA256) != 64 || strings.Trim(img.SHA256, "0123456789abcdef") != "" {
			e.add("%s image: digest %q is not a sha256 in lower-case hex", img.Role, img.SHA256)
		}
		if img.Adopt == "" && img.Path == "" {
			e.add("%s image: no file to upload", img.Role)
		}
	}
	if len(e) > 0 {
		return fmt.Errorf("gcp images of project %q: %s", project, strings.Join(e, "; "))
	}
	return nil
}
